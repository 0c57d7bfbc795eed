"""Fake HTTP servers (Coder, Twilio) for tests, end-to-end runs and benchmarks.

This module holds the plumbing both fakes share: a real ThreadingHTTPServer on 127.0.0.1 in a
daemon thread, restartable on the same port (so a test can make the port refuse connections and
come back), with latency, "fail the next n requests" and "drop every connection" fault injection.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger("tests.fakes")


@dataclass
class FakeRequest:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client_ip: str

    def param(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass
class FakeResponse:
    """What the fake answers: a JSON-able body (None for no body, bytes sent raw) and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FailRule:
    """Answer `status` to the next `remaining` requests matching method and path prefix.

    With `after`, the request is carried out first and only its answer is replaced: a gateway
    that timed out while the server did the work.
    """

    remaining: int
    status: int
    method: str | None = None
    path_prefix: str | None = None
    retry_after: str | None = None
    after: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        return not self.path_prefix or path.startswith(self.path_prefix)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The handler threads are daemons and stop() closes their sockets, so never wait for them.
    block_on_close = False
    # socketserver's default backlog of 5 resets connections when a class bursts in at once.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], fake: BaseFakeServer) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # `down`: accept and drop at once, as a crashed proxy would; nothing is read or answered.
        return not self.fake.down

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            sockets = list(self.connections)
            self.connections.clear()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is an expected event in fault tests, not a bug.
        logger.debug("fake server: connection from %s ended with an error", client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as real servers do; a client pool then reuses them.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each answer waits ~40 ms.
    disable_nagle_algorithm = True
    server: _Server
    timeout = 60

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def _serve(self) -> None:
        fake = self.server.fake
        if fake.down:
            self.close_connection = True
            return
        request = self._read_request()
        fake.received(request)
        if fake.latency > 0:
            time.sleep(fake.latency)
        try:
            response = fake.dispatch(request)
        except Exception:
            logger.exception("fake server: handler crashed on %s %s", request.method, request.path)
            response = FakeResponse(500, {"message": "Internal error in the fake server."})
        self._write(response)

    def _read_request(self) -> FakeRequest:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return FakeRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
            client_ip=self.client_address[0],
        )

    def _write(self, response: FakeResponse) -> None:
        # bytes go out as they are (a plain-text error, with its own Content-Type header).
        if isinstance(response.body, bytes):
            payload = response.body
        else:
            payload = b"" if response.body is None else json.dumps(response.body).encode()
        try:
            self.send_response(response.status)
            for name, value in self.server.fake.default_headers().items():
                self.send_header(name, value)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if payload and not any(k.lower() == "content-type" for k in response.headers):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload and self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake server: " + format, *args)


class BaseFakeServer:
    """A real HTTP server on loopback; subclasses implement `handle(request)`.

    Knobs (plain attributes, safe to change from any thread while it runs):
    `latency` seconds slept before every answer; `down` drops every connection unanswered.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.down = False
        self._lock = threading.RLock()
        self._fail_rules: list[FailRule] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the fake server has not been started yet")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        """Listen (again) on the same port; the state survives a stop()/start() cycle."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), self)
        self.port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits for one poll: keep it short
            daemon=True,
            name=f"{type(self).__name__}:{self.port}",
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections, so clients see "connection refused"."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        retry_after: float | str | None = None,
        after: bool = False,
    ) -> None:
        """Answer `status` to the next n requests (optionally only those matching method/path).

        `after=True` carries each request out before answering `status` (where the fake
        supports it: the fake Coder does).
        """
        rule = FailRule(
            remaining=n,
            status=status,
            method=method,
            path_prefix=path_prefix,
            retry_after=None if retry_after is None else str(retry_after),
            after=after,
        )
        with self._lock:
            self._fail_rules.append(rule)

    def clear_failures(self) -> None:
        """Forget the injected failures not used up yet (ends a time-boxed outage)."""
        with self._lock:
            self._fail_rules.clear()

    def take_failure(self, method: str, path: str) -> FailRule | None:
        """Consume one injected failure matching this request, if any."""
        with self._lock:
            for rule in self._fail_rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    self._fail_rules = [r for r in self._fail_rules if r.remaining > 0]
                    return rule
        return None

    def default_headers(self) -> dict[str, str]:
        return {}

    def received(self, request: FakeRequest) -> None:
        """Called as soon as a request is read, before the latency: record it here."""

    def dispatch(self, request: FakeRequest) -> FakeResponse:
        raise NotImplementedError
