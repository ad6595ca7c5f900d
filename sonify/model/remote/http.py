"""HTTP to an OpenAI-compatible server: JSON requests and Server-Sent Events, with bounded waits.

Every response is read by a helper thread that hands lines to the caller through a bounded
queue, so the caller can notice a server that has gone quiet (and say so) without losing
data, give up after ``stall_timeout`` seconds of silence, and, by not taking lines, slow a
fast server down instead of buffering without limit (the queue fills, the socket stops
being read, TCP holds the server back).
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ...errors import SonifyError

MAX_ERROR_BODY = 65536
_LINES_AHEAD = 256  # lines the reader may hold before it waits for the caller


class ConnectionLost(Exception):
    """The server could not be reached, closed the connection early, or went silent too long.
    Worth trying again."""


class ServerError(SonifyError):
    """The server answered with an error status; ``status`` and the server's own ``message``."""

    def __init__(self, status: int, message: str, url: str):
        self.status, self.message = status, message
        super().__init__(f"the server at {url} answered {status}: {message}")

    @property
    def retryable(self) -> bool:
        """Overloaded or failing for a moment (429, 5xx), rather than refusing the request."""
        return self.status == 429 or self.status >= 500


@dataclass(frozen=True)
class Endpoint:
    """Where the server is and how long to wait for it.

    ``url`` is the API base (``http://host:port/v1``); ``api_key`` is sent as a bearer token.
    ``slow_after`` seconds without data is reported through ``notify``; ``stall_timeout``
    seconds without data counts as a lost connection."""

    url: str
    api_key: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    slow_after: float = 5.0
    stall_timeout: float = 60.0
    notify: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SonifyError(f"--server {self.url!r} is not an http(s) URL; give the API base, e.g. http://127.0.0.1:8080/v1")
        if parts.username or parts.password:
            raise SonifyError("--server: put no credentials in the URL; name an environment variable with --api-key-env")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise SonifyError(f"--server {self.url!r} has a bad port number") from None

    def address(self, path: str) -> str:
        return self.url.rstrip("/") + path

    def get_json(self, path: str) -> dict:
        """GET ``path`` under the API base and return its JSON."""
        with _Exchange(self, "GET", path, None) as exchange:
            return _decode_json(exchange.body(), self.address(path))

    def post_json(self, path: str, body: dict) -> dict:
        """POST ``body`` and return the JSON answer (a whole response, not a stream)."""
        with _Exchange(self, "POST", path, body) as exchange:
            return _decode_json(exchange.body(), self.address(path))

    def post_events(self, path: str, body: dict) -> Iterator[dict]:
        """POST ``body`` and yield each Server-Sent Event's JSON until ``[DONE]``; a stream that
        ends without it was cut off (``ConnectionLost``).

        Leaving the loop early closes the connection (the server stops generating)."""
        with _Exchange(self, "POST", path, body) as exchange:
            data: list[str] = []
            for line in exchange.lines():
                text = line.decode("utf-8", errors="replace").rstrip("\r\n")
                if text.startswith("data:"):
                    data.append(text[5:].strip())
                elif text == "" and data:
                    payload = "\n".join(data)
                    data = []
                    if payload == "[DONE]":
                        return
                    yield _decode_json(payload.encode(), self.address(path))
                # Other fields (event:, id:) and comments (": keepalive") only show the server is alive.
            if data == ["[DONE]"]:
                return
            raise ConnectionLost(f"{self.address(path)} ended the stream before it was done")


def _decode_json(data: bytes, url: str) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        raise ConnectionLost(f"{url} sent something that is not JSON ({data[:80]!r})") from None
    if not isinstance(value, dict):
        raise ConnectionLost(f"{url} sent JSON that is not an object")
    return value


def error_message(data: bytes) -> str:
    """The server's own words from an error body: OpenAI's, FastAPI's and mlx-lm's shapes."""
    try:
        value = json.loads(data)
    except ValueError:
        return data.decode("utf-8", errors="replace").strip()[:300] or "no message"
    if isinstance(value, dict):
        inner = value.get("error", value.get("detail", value.get("message")))
        if isinstance(inner, dict):
            inner = inner.get("message", inner)
        if isinstance(inner, list) and inner and isinstance(inner[0], dict):  # FastAPI validation errors
            inner = "; ".join(str(e.get("msg", e)) for e in inner)
        if inner is not None:
            return str(inner)[:300]
    return str(value)[:300]


class _Exchange:
    """One request and its response, read by a helper thread."""

    def __init__(self, endpoint: Endpoint, method: str, path: str, body: dict | None):
        self.endpoint = endpoint
        self.url = endpoint.address(path)
        parts = urlsplit(self.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        # The socket timeout is only a backstop for the helper thread; waits are timed by the caller.
        self.connection = kind(parts.hostname, parts.port, timeout=endpoint.connect_timeout)
        self.method, self.target = method, parts.path + (f"?{parts.query}" if parts.query else "")
        self.payload = None if body is None else json.dumps(body).encode()
        self.inbox: queue.Queue = queue.Queue(maxsize=_LINES_AHEAD)
        self.closed = threading.Event()

    def __enter__(self) -> _Exchange:
        headers = {"Accept": "application/json, text/event-stream"}
        if self.payload is not None:
            headers["Content-Type"] = "application/json"
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        try:
            self.connection.request(self.method, self.target, body=self.payload, headers=headers)
            self.connection.sock.settimeout(self.endpoint.stall_timeout + 5.0)
        except (OSError, http.client.HTTPException) as exc:
            self.connection.close()
            raise ConnectionLost(f"cannot reach {self.url} ({_reason(exc)})") from None
        return self

    def __exit__(self, *exc) -> None:
        self.closed.set()
        sock = self.connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the helper thread if it is blocked reading
            except OSError:
                pass
        self.connection.close()

    def _start(self, whole: bool) -> None:
        threading.Thread(target=self._read, args=(whole,), name="sonify-server-reader", daemon=True).start()

    def _put(self, item: tuple) -> None:
        while not self.closed.is_set():
            try:
                self.inbox.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read(self, whole: bool) -> None:
        try:
            response = self.connection.getresponse()
            if response.status >= 400:
                self._put(("status", (response.status, response.read(MAX_ERROR_BODY))))
                return
            if whole:
                self._put(("body", response.read()))
                return
            while not self.closed.is_set():
                line = response.readline()
                if not line:
                    break
                self._put(("line", line))
            self._put(("end", None))
        except Exception as exc:  # noqa: BLE001 - handed over; once the caller has closed, nobody waits for it
            if not self.closed.is_set():
                self._put(("lost", _reason(exc)))

    def _next(self, whole: bool = False) -> tuple:
        """The reader's next item, reporting silence after ``slow_after`` and giving up after
        ``stall_timeout``. A whole answer (``whole``) comes only when all of it is made, so
        its silence is reported only after four times as long."""
        waited_since = time.monotonic()
        endpoint = self.endpoint
        slow_after = min(endpoint.slow_after * (4 if whole else 1), endpoint.stall_timeout)
        reported = False
        while True:
            next_check = waited_since + (endpoint.stall_timeout if reported else slow_after)
            try:
                return self.inbox.get(timeout=max(0.01, next_check - time.monotonic()))
            except queue.Empty:
                silent = time.monotonic() - waited_since
                if silent >= endpoint.stall_timeout:
                    raise ConnectionLost(f"{self.url} sent nothing for {silent:.0f} s") from None
                if silent >= slow_after and not reported:
                    reported = True
                    if endpoint.notify is not None:
                        endpoint.notify(
                            f"the server has sent nothing for {silent:.0f} s; waiting up to {endpoint.stall_timeout:g} s"
                        )

    def _check(self, kind: str, value) -> None:
        if kind == "status":
            status, data = value
            raise ServerError(status, error_message(data), self.url)
        if kind == "lost":
            raise ConnectionLost(f"the connection to {self.url} broke ({value})")

    def body(self) -> bytes:
        self._start(whole=True)
        kind, value = self._next(whole=True)
        self._check(kind, value)
        return value

    def lines(self) -> Iterator[bytes]:
        self._start(whole=False)
        while True:
            kind, value = self._next()
            self._check(kind, value)
            if kind == "end":
                return
            yield value


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is the server running?"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected | http.client.IncompleteRead):
        return "the server closed the connection"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
