"""The live page: the piece's page served from a local address while it plays.

A small HTTP + websocket server (the ``websockets`` library, in threads) serves the same page
that ``sonify render --page`` writes, without audio; each word is sent over the websocket
when it sounds, with its token's numbers and alternatives, and each note when it starts, so
the text appears and lights up in the browser as the model produces it: a visual for a live
set. A browser that connects late gets the recent history first. Memory stays bounded: the
history is a fixed-length queue and a browser that cannot keep up is dropped.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..errors import SonifyError
from ..model.frame import Frame
from ..music.score import Cue, Note, Placed, VoiceInfo
from ..outputs.page import PageInfo, fill_template, is_heading, note_record, token_record, voice_records
from .scheduler import Scheduler

HISTORY = 3000  # messages a late browser is sent first
CLIENT_QUEUE = 5000  # messages waiting for one browser before it counts as gone
SOCKET_PATH = "/ws"


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT``, or just ``PORT`` on this machine (127.0.0.1); port 0 picks a free one."""
    host, _, port = address.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number < 65536:
        raise SonifyError(f"--page {address!r} is not HOST:PORT (port 0..65535), e.g. 127.0.0.1:8765")
    return host or "127.0.0.1", number


class LiveWords:
    """Turns the placed units of the text (words and runs of art, as the mapping releases
    them) into the page's word updates, with the line breaks before each and whether the
    line just closed is a heading: the same grouping the file page reads from the Score,
    at constant work per unit."""

    def __init__(self) -> None:
        self.count = 0  # units so far
        self.previous_line: int | None = None
        self.line: list[str] = []  # the current line's words
        self.after_break = True  # the current line opens a stanza (or the text)

    def add(self, unit: Placed) -> list[dict[str, Any]]:
        """The page's update for ``unit``: a new word, with its start and end."""
        breaks = 0 if self.previous_line is None else unit.line - self.previous_line
        update = {"index": self.count, "text": unit.text, "start": unit.time, "end": unit.time + unit.duration, "new": True,
                  "breaks": breaks}  # fmt: skip
        if breaks and self.line:
            update["heading"] = is_heading(" ".join(self.line), self.after_break)
            self.line, self.after_break = [], breaks >= 2
        self.line.append(unit.text)
        self.previous_line = unit.line
        self.count += 1
        return [update]

    def last_line_is_heading(self) -> bool:
        return bool(self.line) and is_heading(" ".join(self.line), self.after_break)


class LivePage:
    """Serves the live page at ``http://HOST:PORT/`` and sends it what sounds, when it sounds."""

    def __init__(self, address: str, scheduler: Scheduler, info: PageInfo | None = None):
        try:
            from websockets.sync.server import serve
        except ImportError:
            raise SonifyError("the live page needs websockets: pip install websockets") from None
        host, port = parse_address(address)
        self.scheduler = scheduler
        self.info = info or PageInfo("sonify · live")
        self.voices: list[dict[str, str]] = []
        self.voice_index: dict[str, int] = {}
        self.words = LiveWords()
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.clients: set[queue.Queue] = set()
        self.sent = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._html = fill_template({"version": 1, "live": True, "title": self.info.title, "subtitle": self.info.subtitle}, "")
        try:
            self.server = serve(self._serve_socket, host, port, process_request=self._serve_http, compression=None)
        except OSError as exc:
            raise SonifyError(f"cannot serve the page on {host}:{port}: {exc.strerror}; choose another --page HOST:PORT") from None
        self.host, self.port = host, self.server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="sonify-page", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def describe(self, info: PageInfo, voices: Sequence[VoiceInfo]) -> None:
        """Title, subtitle and voices, sent to every browser (now and on connecting)."""
        self.info = info
        self.voices = voice_records(voices)
        self.voice_index = {v["name"]: k for k, v in enumerate(self.voices)}
        self._broadcast(self._hello(), record=False)

    # ------------------------------------------------------------------ what sounds

    def token(self, due: float, cue: Cue, frame: Frame | None, unit: Placed | None = None) -> None:
        """Send ``cue``'s token at ``due`` (monotonic seconds), with the unit of text it
        begins, if any. Call in the cues' order."""
        message = {"type": "token", "t": round(cue.time, 4), "index": cue.token, "token": token_record(cue, frame),
                   "words": self.words.add(unit) if unit is not None else []}  # fmt: skip
        self.scheduler.at(due, lambda: self._broadcast(message))

    def note(self, due: float, note: Note, held: bool = False) -> None:
        """Send ``note`` at ``due``; ``held``: its end is not known yet (:meth:`note_end` follows)."""
        message = {"type": "note", "note": note_record(note, self.voice_index), "key": _key(note), "held": held}
        self.scheduler.at(due, lambda: self._broadcast(message))

    def note_end(self, due: float, note: Note) -> None:
        """The end of a held note, now known."""
        self.note(due, note)

    def event(self, due: float | None, name: str, score_time: float | None = None) -> None:
        """``start`` or ``stop`` of the performance, at ``due`` (``None``: now)."""
        message: dict[str, Any] = {"type": name}
        if score_time is not None:
            message["t"] = round(score_time, 4)
        if name == "stop":
            message["heading"] = self.words.last_line_is_heading()
        if due is None:
            self._broadcast(message)
        else:
            self.scheduler.at(due, lambda: self._broadcast(message))

    def close(self) -> None:
        self._closed.set()
        self.server.shutdown()
        self._thread.join(timeout=2)

    # ------------------------------------------------------------------ serving

    def _hello(self) -> dict[str, Any]:
        return {"type": "hello", "title": self.info.title, "subtitle": self.info.subtitle, "voices": self.voices}

    def _broadcast(self, message: dict[str, Any], record: bool = True) -> None:
        text = json.dumps(message, ensure_ascii=False, allow_nan=False)
        with self._lock:
            if record:
                self.history.append(message)
            for client in list(self.clients):
                try:
                    client.put_nowait(text)
                except queue.Full:  # this browser stopped reading: let it go, keep the others
                    self.clients.discard(client)
            self.sent += 1

    def _serve_http(self, connection, request):
        path = request.path.split("?")[0]
        if path == SOCKET_PATH:
            return None  # go on with the websocket handshake
        if path not in ("/", "/index.html"):
            return connection.respond(404, "not found\n")
        response = connection.respond(200, self._html)
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        response.headers["Cache-Control"] = "no-store"
        return response

    def _serve_socket(self, connection) -> None:
        inbox: queue.Queue = queue.Queue(maxsize=CLIENT_QUEUE)
        with self._lock:
            hello = {**self._hello(), "history": list(self.history)}
            self.clients.add(inbox)
        try:
            connection.send(json.dumps(hello, ensure_ascii=False, allow_nan=False))
            while not self._closed.is_set():
                try:
                    text = inbox.get(timeout=0.5)
                except queue.Empty:
                    with self._lock:
                        if inbox not in self.clients:
                            return
                    continue
                connection.send(text)
        except Exception:  # the browser went away: nothing to clean up but its queue
            return
        finally:
            with self._lock:
                self.clients.discard(inbox)


def _key(note: Note) -> str:
    return f"{note.voice}:{note.pitch}:{note.token}:{note.time:.6f}"
