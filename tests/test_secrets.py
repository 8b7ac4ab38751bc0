"""Tests of password resolution, the Secret wrapper and the masker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from replicator.errors import InputError
from replicator.runbook import PasswordSource
from replicator.secrets import MASKER, Secret, SecretMasker, resolve_password

FIELD = "replication.password"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An in-process Secrets Manager (moto) with fake credentials."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


def store_secret(name: str, value: str) -> None:
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=value)


def secrets_client() -> Any:
    return boto3.client("secretsmanager")


def resolve_secret(secret_id: str) -> Secret:
    source = PasswordSource(secret=secret_id)
    return resolve_password(source, field=FIELD, secrets_client_factory=secrets_client)


def input_error(source: PasswordSource) -> InputError:
    with pytest.raises(InputError) as caught:
        resolve_password(source, field=FIELD)
    return caught.value


# --- Secret ------------------------------------------------------------------


def test_secret_prints_masked() -> None:
    """repr, str and f-strings of a Secret show *** only."""
    secret = Secret("hunter2-hunter2")

    assert repr(secret) == "'***'"
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert repr([secret]) == "['***']"


def test_secret_reveals_its_value() -> None:
    """reveal() returns the wrapped value."""
    assert Secret("hunter2").reveal() == "hunter2"


def test_secrets_compare_by_value_but_never_equal_a_string() -> None:
    """Two Secrets with one value are equal; a Secret is not equal to its string."""
    assert Secret("pw-1") == Secret("pw-1")
    assert Secret("pw-1") != Secret("pw-2")
    assert Secret("pw-1") != "pw-1"


def test_secret_is_not_found_under_its_plain_string_key() -> None:
    """A Secret never finds a dict entry or set member keyed by its plain string."""
    assert Secret("pw-1") not in {"pw-1"}
    assert {"pw-1": 1}.get(Secret("pw-1")) is None  # type: ignore[call-overload]


def test_secret_truthiness_follows_emptiness() -> None:
    """A Secret is true when it holds a non-empty value."""
    assert bool(Secret("x")) is True
    assert bool(Secret("")) is False


# --- environment -------------------------------------------------------------


def test_env_source_reads_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """{env: NAME} takes the password from the environment."""
    monkeypatch.setenv("REPL_PW", "s3cret-value")

    secret = resolve_password(PasswordSource(env="REPL_PW"), field=FIELD)

    assert secret.reveal() == "s3cret-value"


def test_missing_env_variable_names_field_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A missing variable is an input error that says what to export."""
    monkeypatch.delenv("REPL_PW", raising=False)

    error = input_error(PasswordSource(env="REPL_PW"))

    assert (
        error.message == "replication.password: environment variable REPL_PW is not set"
    )
    assert error.hint == "export REPL_PW=... before running"


def test_empty_env_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty variable is refused like a missing one."""
    monkeypatch.setenv("REPL_PW", "")

    error = input_error(PasswordSource(env="REPL_PW"))

    assert (
        error.message == "replication.password: environment variable REPL_PW is empty"
    )


# --- file --------------------------------------------------------------------


def test_file_source_strips_one_trailing_newline(tmp_path: Path) -> None:
    """{file: PATH} reads the file and drops one trailing newline only."""
    path = tmp_path / "repl.txt"
    path.write_text("pass word \n\n", encoding="utf-8")

    secret = resolve_password(PasswordSource(file=path), field=FIELD)

    assert secret.reveal() == "pass word \n"


def test_file_source_strips_a_windows_line_ending(tmp_path: Path) -> None:
    """A trailing CRLF counts as one newline."""
    path = tmp_path / "repl.txt"
    path.write_bytes(b"pw-1234\r\n")

    secret = resolve_password(PasswordSource(file=path), field=FIELD)

    assert secret.reveal() == "pw-1234"


def test_missing_file_names_field_and_path(tmp_path: Path) -> None:
    """A password file that does not exist is an input error naming it."""
    path = tmp_path / "absent.txt"

    error = input_error(PasswordSource(file=path))

    assert error.message == (
        f"replication.password: cannot read password file {path}:"
        " no such file or directory"
    )


def test_empty_file_is_refused(tmp_path: Path) -> None:
    """A file holding only a newline gives no password."""
    path = tmp_path / "repl.txt"
    path.write_text("\n", encoding="utf-8")

    error = input_error(PasswordSource(file=path))

    assert error.message == f"replication.password: password file {path} is empty"


# --- Secrets Manager ---------------------------------------------------------


@pytest.mark.usefixtures("aws")
def test_json_secret_gives_its_password_key() -> None:
    """A JSON secret string with a password key gives that key's value."""
    store_secret("prod/repl", json.dumps({"username": "repl", "password": "pw-1234"}))

    assert resolve_secret("prod/repl").reveal() == "pw-1234"


@pytest.mark.usefixtures("aws")
def test_plain_secret_gives_the_whole_string() -> None:
    """A secret string that is not a JSON object with a password is the password."""
    store_secret("prod/repl", "plain-pw-1234")

    assert resolve_secret("prod/repl").reveal() == "plain-pw-1234"


@pytest.mark.usefixtures("aws")
def test_secret_without_password_key_gives_the_whole_json() -> None:
    """A JSON object without a password key is taken whole."""
    store_secret("prod/repl", '{"pw": "x"}')

    assert resolve_secret("prod/repl").reveal() == '{"pw": "x"}'


@pytest.mark.usefixtures("aws")
def test_default_client_uses_the_environment_region() -> None:
    """Without a factory, the client comes from boto3's defaults."""
    store_secret("prod/repl", "plain-pw-1234")

    secret = resolve_password(PasswordSource(secret="prod/repl"), field=FIELD)

    assert secret.reveal() == "plain-pw-1234"


@pytest.mark.usefixtures("aws")
def test_unknown_secret_names_the_id_and_aws_error_code() -> None:
    """An AWS error becomes an input error with the secret id and the error code."""
    with pytest.raises(InputError) as caught:
        resolve_secret("prod/absent")

    assert caught.value.message == (
        "replication.password: cannot read secret prod/absent from Secrets Manager:"
        " ResourceNotFoundException"
    )


@pytest.mark.usefixtures("aws")
def test_json_password_that_is_not_a_string_gives_the_whole_json() -> None:
    """A password key holding a number is not taken; the whole string is."""
    store_secret("prod/repl", json.dumps({"password": 12345678}))

    assert resolve_secret("prod/repl").reveal() == '{"password": 12345678}'


def test_secret_binary_only_is_refused_without_its_value() -> None:
    """A secret with no SecretString is an input error that shows no value."""

    class BinaryOnlyClient:
        def get_secret_value(self, **request: str) -> dict[str, Any]:
            return {"SecretBinary": b"raw-pw-1234"}

    with pytest.raises(InputError) as caught:
        resolve_password(
            PasswordSource(secret="prod/bin"),
            field=FIELD,
            secrets_client_factory=BinaryOnlyClient,
        )

    assert caught.value.message == (
        "replication.password: secret prod/bin holds no password string"
    )
    assert "raw-pw" not in str(caught.value)


def test_client_is_created_only_for_secret_sources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """env and file sources never build a Secrets Manager client."""
    monkeypatch.setenv("REPL_PW", "pw-1234")
    built: list[str] = []

    def factory() -> Any:
        built.append("client")
        raise AssertionError

    resolve_password(
        PasswordSource(env="REPL_PW"), field=FIELD, secrets_client_factory=factory
    )

    assert built == []


# --- masker ------------------------------------------------------------------


def test_masker_replaces_every_occurrence() -> None:
    """Every occurrence of every registered value becomes ***."""
    masker = SecretMasker()
    masker.register(Secret("pw-1234"))
    masker.register(Secret("other-secret"))

    masked = masker.mask("a=pw-1234 b=other-secret c=pw-1234")

    assert masked == "a=*** b=*** c=***"


def test_masker_prefers_the_longest_value() -> None:
    """A value that contains another registered value is masked whole."""
    masker = SecretMasker()
    masker.register(Secret("abcd"))
    masker.register(Secret("abcdefgh"))

    assert masker.mask("x abcdefgh y abcd") == "x *** y ***"


def test_masker_ignores_values_shorter_than_four_characters() -> None:
    """Short values would mask ordinary text, so they are not registered."""
    masker = SecretMasker()
    masker.register(Secret("abc"))

    assert masker.mask("abc abcd") == "abc abcd"


def test_masker_treats_values_literally() -> None:
    """Regular-expression characters in a value are matched as themselves."""
    masker = SecretMasker()
    masker.register(Secret("a.b*c+"))

    assert masker.mask("a.b*c+ aXbbc") == "*** aXbbc"


def test_empty_masker_returns_the_text_unchanged() -> None:
    """With nothing registered, mask returns its input."""
    assert SecretMasker().mask("nothing to hide") == "nothing to hide"


def test_module_masker_is_shared() -> None:
    """MASKER is the process-wide masker other modules register into."""
    assert isinstance(MASKER, SecretMasker)
