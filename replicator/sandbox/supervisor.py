"""The sandbox supervisor: moto's RDS API over HTTP plus the MariaDB data plane.

Run as ``python -m replicator.sandbox.supervisor DIR``; ``replicator sandbox
up`` starts it in the background. It listens on 127.0.0.1 only, writes
``DIR/supervisor.json`` (pid and port) once ready, and serves until
``POST /_sandbox/shutdown`` or SIGTERM, when it stops every server it started.

Besides the AWS API it answers ``GET /_sandbox/status`` with the servers it
runs and ``GET /_sandbox/requests`` with the API calls received so far, by
action, as JSON.
"""

from __future__ import annotations

import collections
import io
import json
import os
import signal
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from replicator.sandbox.dataplane import DataPlane

ACCOUNT = "123456789012"
STATE_FILE = "supervisor.json"
StartResponse = Callable[..., Any]


def _backend(region: str) -> Any:
    from moto.rds.models import rds_backends

    return rds_backends[ACCOUNT][region]


class Supervisor:
    """Owns the HTTP server, the data plane and their shutdown."""

    def __init__(self, root: Path, region: str) -> None:
        from moto.backends import get_backend  # noqa: F401 - loads moto's registry
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            create_backend_app,
        )

        from replicator.sandbox import control_plane

        self.root = root
        self.plane = DataPlane(root, record_event=lambda _i, _m: None)
        control_plane.install(self.plane, lambda: _backend(region))
        self.moto_app = DomainDispatcherApplication(create_backend_app)
        self.stopping = threading.Event()
        self.actions: collections.Counter[str] = collections.Counter()
        self.counter_lock = threading.Lock()
        self.http = make_server("127.0.0.1", 0, self, threaded=True)

    def __call__(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_sandbox/"):
            return self._own(Request(environ))(environ, start_response)
        self._count_action(environ)
        result: Iterable[bytes] = self.moto_app(environ, start_response)
        return result

    def _count_action(self, environ: dict[str, Any]) -> None:
        """Count API calls by action, so tests can prove what a command sent."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        fields = urllib.parse.parse_qs(body.decode(errors="replace"))
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        action = (fields.get("Action") or query.get("Action") or ["?"])[0]
        with self.counter_lock:
            self.actions[action] += 1

    def _own(self, request: Request) -> Response:
        if request.path == "/_sandbox/requests":
            with self.counter_lock:
                counts = dict(self.actions)
            return Response(json.dumps(counts), mimetype="application/json")
        if request.path == "/_sandbox/status":
            body = {"pid": os.getpid(), "servers": self.plane.servers()}
            return Response(json.dumps(body), mimetype="application/json")
        if request.path == "/_sandbox/shutdown" and request.method == "POST":
            threading.Thread(target=self.stop, daemon=True).start()
            return Response(json.dumps({"stopping": True}), mimetype="application/json")
        return Response("not found", status=404)

    def serve(self) -> None:
        """Prepare the data plane, announce readiness, serve until stopped."""
        self.plane.prepare()
        port = self.http.server_port
        state = {"pid": os.getpid(), "host": "127.0.0.1", "port": port}
        path = self.root / STATE_FILE
        path.with_suffix(".tmp").write_text(json.dumps(state))
        path.with_suffix(".tmp").replace(path)
        self.http.serve_forever()

    def stop(self) -> None:
        """Stop every server, then the HTTP server."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.plane.shutdown()
        (self.root / STATE_FILE).unlink(missing_ok=True)
        self.http.shutdown()


def main(argv: list[str]) -> int:
    """Run the supervisor for the sandbox directory ``argv[0]``."""
    root = Path(argv[0]).resolve()
    region = argv[1] if len(argv) > 1 else "us-east-1"
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    supervisor = Supervisor(root, region)

    def on_signal(_signum: int, _frame: Any) -> None:
        threading.Thread(target=supervisor.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    supervisor.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
