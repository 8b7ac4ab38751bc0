"""Cluster endpoints: a TCP forwarder per cluster name.

An Aurora cluster endpoint is a DNS name derived from the cluster identifier:
rename a cluster and the name (with new connections) follows the identifier,
while open connections stay where they were. The sandbox reproduces that with
one listening port per cluster name on 127.0.0.1, forwarding each new
connection to the port of the cluster's current writer. A name with no cluster
behind it refuses connections, like a name that does not resolve.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

_BUFFER = 65536
Resolver = Callable[[], int | None]


class Endpoint:
    """A listening port that forwards to whatever ``resolve()`` names."""

    def __init__(self, name: str, resolve: Resolver, port: int = 0) -> None:
        self.name = name
        self.resolve = resolve
        self._listener = socket.create_server(("127.0.0.1", port), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"endpoint-{name}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting; open connections run until either side closes."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        target_port = self.resolve()
        if target_port is None:
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        # The MySQL protocol sends small packets and waits for answers; without
        # NODELAY, Nagle's algorithm holds them back for tens of milliseconds.
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes, then close both."""
    try:
        while chunk := source.recv(_BUFFER):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
