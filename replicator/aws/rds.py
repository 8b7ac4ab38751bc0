"""The RDS adapter: every AWS call the steps make, with retries and waits.

boto3's own retries are switched off so that one named policy retries, and
logs, every transient failure: throttling and 5xx answers, with exponential
backoff and jitter, until the call's deadline. Listings go through boto3's
paginators. Every wait has a deadline and says what it waits for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from replicator.errors import InputError, StepFailedError

T = TypeVar("T")

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
    }
)
CALL_DEADLINE_S = 120.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 20.0
PROGRESS_EVERY_S = 30.0
RUN_TAG = "replicator:run"


def is_transient(error: BaseException) -> bool:
    """Tell whether an AWS error is worth retrying: throttling or a 5xx."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(error, ConnectionError | HTTPClientError):
        return True
    if not isinstance(error, ClientError):
        return False
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in TRANSIENT_CODES or int(status) >= 500


def _refuse_missing_credentials(error: BaseException) -> None:
    from botocore.exceptions import NoCredentialsError, NoRegionError

    if isinstance(error, NoCredentialsError | NoRegionError):
        raise InputError(
            f"AWS is not configured: {error}",
            hint="configure AWS credentials (profile, environment or role); for the "
            'sandbox: eval "$(replicator sandbox up)"',
        ) from None


def error_code(error: BaseException) -> str | None:
    """Return the AWS error code of a ClientError, else None."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


@dataclass
class Clock:
    """Time and sleep, injectable so that tests never wait."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class Rds:
    """What the steps ask of RDS, each call retried by the AWS policy."""

    def __init__(
        self,
        client: Any,
        log: Any,
        clock: Clock | None = None,
        *,
        region: str = "",
        record: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.client = client
        self.log = log
        self.clock = clock or Clock()
        self.region = region
        self.call_deadline_s = CALL_DEADLINE_S
        # Waits and retries are journaled for the run's report.
        self.record = record or (lambda _kind, _data: None)

    # --- the retry policy --------------------------------------------------------

    def call(self, operation: str, **kwargs: Any) -> Any:
        """Call an RDS operation, retrying transient failures until the deadline."""
        import tenacity

        started = self.clock.monotonic()

        def past_deadline(_state: Any) -> bool:
            return self.clock.monotonic() - started >= self.call_deadline_s

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=tenacity.wait_random_exponential(
                multiplier=BACKOFF_FIRST_S, max=BACKOFF_MAX_S
            ),
            stop=past_deadline,
            sleep=self.clock.sleep,
            before_sleep=self._log_retry(operation),
            reraise=True,
        )
        method = getattr(self.client, operation)
        try:
            return retrying(method, **kwargs)
        except Exception as error:
            _refuse_missing_credentials(error)
            if not is_transient(error):
                raise
            waited = round(self.clock.monotonic() - started)
            raise StepFailedError(
                f"AWS kept failing {operation} for {waited}s; last error: {error}",
                hint="AWS is throttling or unavailable: run the same command again "
                "later; the journal keeps the state",
            ) from error

    def _log_retry(self, operation: str) -> Callable[[Any], None]:
        def log(state: Any) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = round(state.next_action.sleep, 2) if state.next_action else None
            self.log.warning(
                "aws_retry",
                operation=operation,
                attempt=state.attempt_number,
                wait_s=wait,
                error=str(error),
            )
            self.record("aws_retry", {"operation": operation, "error": str(error)})

        return log

    def paginate(self, operation: str, key: str, **kwargs: Any) -> Iterator[Any]:
        """Yield every item of a listing, page by page, each page retried."""
        marker: str | None = None
        while True:
            page = self.call(
                operation, **kwargs, **({"Marker": marker} if marker else {})
            )
            yield from page.get(key, [])
            marker = page.get("Marker")
            if not marker:
                return

    # --- clusters and instances -----------------------------------------------------

    def cluster(self, cluster_id: str) -> dict[str, Any] | None:
        """Return a cluster's description, or None when it does not exist."""
        try:
            found = self.call("describe_db_clusters", DBClusterIdentifier=cluster_id)
        except Exception as error:
            if error_code(error) == "DBClusterNotFoundFault":
                return None
            raise
        clusters: list[dict[str, Any]] = found["DBClusters"]
        return clusters[0] if clusters else None

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        """Return an instance's description, or None when it does not exist."""
        try:
            found = self.call("describe_db_instances", DBInstanceIdentifier=instance_id)
        except Exception as error:
            if error_code(error) == "DBInstanceNotFound":
                return None
            raise
        instances: list[dict[str, Any]] = found["DBInstances"]
        return instances[0] if instances else None

    def clusters(self) -> list[dict[str, Any]]:
        """Return every cluster of the region."""
        return list(self.paginate("describe_db_clusters", "DBClusters"))

    @staticmethod
    def writer_of(cluster: dict[str, Any]) -> str | None:
        """Return the identifier of a cluster's writer instance, if any."""
        for member in cluster.get("DBClusterMembers", []):
            if member.get("IsClusterWriter"):
                return str(member["DBInstanceIdentifier"])
        return None

    @staticmethod
    def tags(resource: dict[str, Any]) -> dict[str, str]:
        """Return a described resource's tags as a dict."""
        return {tag["Key"]: tag["Value"] for tag in resource.get("TagList", [])}

    # --- parameter groups -------------------------------------------------------------

    def cluster_parameters(self, group: str) -> dict[str, dict[str, Any]]:
        """Return a cluster parameter group's parameters by name."""
        items = self.paginate(
            "describe_db_cluster_parameters",
            "Parameters",
            DBClusterParameterGroupName=group,
        )
        return {item["ParameterName"]: item for item in items}

    def cluster_parameter(self, group: str, name: str) -> str | None:
        """Return one parameter's value in a cluster parameter group."""
        value = self.cluster_parameters(group).get(name, {}).get("ParameterValue")
        return None if value is None else str(value)

    def instance_parameter(self, group: str, name: str) -> str | None:
        """Return one parameter's value in a DB (instance) parameter group."""
        items = self.paginate(
            "describe_db_parameters", "Parameters", DBParameterGroupName=group
        )
        for item in items:
            if item.get("ParameterName") == name:
                value = item.get("ParameterValue")
                return None if value is None else str(value)
        return None

    # --- events ---------------------------------------------------------------------

    def instance_events(self, instance_id: str) -> list[dict[str, Any]]:
        """Return the RDS events of an instance, oldest first."""
        events = list(
            self.paginate(
                "describe_events",
                "Events",
                SourceIdentifier=instance_id,
                SourceType="db-instance",
                Duration=20160,
            )
        )
        return sorted(events, key=lambda event: str(event.get("Date", "")))

    # --- waiting --------------------------------------------------------------------

    def wait_for(
        self,
        what: str,
        probe: Callable[[], T | None],
        *,
        deadline_s: float,
        interval_s: float = 5.0,
        hint: str,
        **context: Any,
    ) -> T:
        """Poll ``probe`` until it returns a value; log progress; stop at deadline."""
        started = self.clock.monotonic()
        last_report = started
        self.log.info("waiting", what=what, deadline_s=deadline_s, **context)
        while True:
            result = probe()
            if result is not None:
                waited = round(self.clock.monotonic() - started, 3)
                self.record("wait", {"what": what, "seconds": waited})
                return result
            now = self.clock.monotonic()
            if now - started >= deadline_s:
                raise StepFailedError(
                    f"gave up waiting for {what} after {round(now - started)}s",
                    hint=hint,
                )
            if now - last_report >= PROGRESS_EVERY_S:
                self.log.info(
                    "still_waiting", what=what, waited_s=round(now - started), **context
                )
                last_report = now
            self.clock.sleep(interval_s)


def make_client(region: str) -> Any:
    """Return a boto3 RDS client whose own retries are off (ours log each one)."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=10
    )
    return boto3.client("rds", region_name=region, config=config)
