"""Passwords: where they come from, how they stay out of every output.

A password is resolved from the runbook's password source into a ``Secret``,
which prints as ``***``. Resolved values are registered with ``MASKER`` so
text bound for logs, the journal or ``plan`` output can be scrubbed.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from replicator.errors import InputError
from replicator.runbook import PasswordSource

MASK = "***"
# Shorter values would mask ordinary words and numbers all over the output.
MIN_MASKED_LENGTH = 4


class Secret:
    """A password that never shows in a repr, a str, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the value; only for the driver or API call that needs it."""
        return self._value

    def __repr__(self) -> str:
        return repr(MASK)

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        # Salted with the class so a Secret never collides with its plain string.
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


def resolve_password(
    source: PasswordSource,
    *,
    field: str,
    secrets_client_factory: Callable[[], Any] | None = None,
) -> Secret:
    """Read the password a runbook's password source points to.

    ``field`` names the runbook field (e.g. ``replication.password``) in error
    messages. ``secrets_client_factory`` builds the Secrets Manager client, so
    the caller picks the region; without it boto3's defaults apply.
    """
    if source.kind == "env":
        return _from_env(source.reference, field)
    if source.kind == "file":
        return _from_file(Path(source.reference), field)
    return _from_secrets_manager(source.reference, field, secrets_client_factory)


def _from_env(name: str, field: str) -> Secret:
    value = os.environ.get(name)
    if not value:
        state = "is not set" if value is None else "is empty"
        raise InputError(
            f"{field}: environment variable {name} {state}",
            hint=f"export {name}=... before running",
        )
    return Secret(value)


def _from_file(path: Path, field: str) -> Secret:
    hint = f"write the password into {path}, readable by this user only"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{field}: password file {path} is not UTF-8 text") from None
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise InputError(
            f"{field}: cannot read password file {path}: {reason}", hint=hint
        ) from exc

    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise InputError(f"{field}: password file {path} is empty", hint=hint)
    return Secret(value)


def _from_secrets_manager(
    secret_id: str, field: str, client_factory: Callable[[], Any] | None
) -> Secret:
    from botocore.exceptions import ClientError

    client = client_factory() if client_factory else _default_client()
    try:
        response = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        raise InputError(
            f"{field}: cannot read secret {secret_id} from Secrets Manager: {code}",
            hint="check the secret id, the region and this role's"
            " secretsmanager:GetSecretValue permission",
        ) from exc

    value = _password_in(response.get("SecretString"))
    if not value:
        raise InputError(
            f"{field}: secret {secret_id} holds no password string",
            hint='store the password as the secret string or as {"password": ...}',
        )
    return Secret(value)


def _default_client() -> Any:
    import boto3

    return boto3.client("secretsmanager")


def _password_in(secret_string: object) -> str | None:
    """The ``password`` of a JSON secret, else the whole secret string."""
    if not isinstance(secret_string, str):
        return None
    try:
        document = json.loads(secret_string)
    except ValueError:
        return secret_string
    if isinstance(document, dict) and isinstance(document.get("password"), str):
        return str(document["password"])
    return secret_string


class SecretMasker:
    """Replace every registered secret value in a text with ``***``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def register(self, secret: Secret) -> None:
        """Mask this secret from now on (values under 4 characters are ignored)."""
        value = secret.reveal()
        if len(value) < MIN_MASKED_LENGTH:
            return
        with self._lock:
            self._values.add(value)
            longest_first = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, longest_first)))

    def mask(self, text: str) -> str:
        """Return ``text`` with every registered value replaced by ``***``."""
        pattern = self._pattern
        return text if pattern is None else pattern.sub(MASK, text)


MASKER = SecretMasker()
