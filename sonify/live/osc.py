"""OSC out: each token's telemetry, sent when the token sounds, for visuals.

Address space (all under ``/sonify``):

- ``/sonify/token``  index (int), text (str), surprisal, entropy, probability,
  attention_entropy, attention_distance (floats), rank (int)
- ``/sonify/layers`` one float per layer: the norm of that layer's update
- ``/sonify/attention`` one float per layer: that layer's attention entropy (0..1)
- ``/sonify/note``   voice (str), pitch, velocity (ints), duration (float, seconds)
- ``/sonify/start`` and ``/sonify/stop`` with no arguments
- ``/sonify/control`` parameter (str: temperature, top_p, tempo, hold, mute.<voice>,
  gain.<voice>), value (float), sent as a controller moves it (``play --control-in``);
  ``preset.next`` and the name of the preset asked for, ``preset`` and its name when it
  starts (at the next bar line)
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import SonifyError
from ..model.frame import Frame
from ..music.score import Note
from .scheduler import Scheduler


def parse_target(target: str) -> tuple[str, int]:
    """``host:port`` (or just ``port`` for this machine)."""
    host, _, port = target.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise SonifyError(f"--osc {target!r} is not HOST:PORT (port 1..65535), e.g. 127.0.0.1:9000")
    return host or "127.0.0.1", number


class OscOut:
    def __init__(self, target: str, scheduler: Scheduler):
        try:
            from pythonosc.udp_client import SimpleUDPClient
        except ImportError:
            raise SonifyError("OSC needs python-osc: pip install python-osc") from None
        host, port = parse_target(target)
        try:
            self.client = SimpleUDPClient(host, port)
        except OSError as exc:
            raise SonifyError(f"cannot send OSC to {target}: {exc.strerror}") from None
        self.scheduler = scheduler
        self.sent = 0
        self.mute: Callable[[Note], bool] | None = None  # asked when a note is sent: whether its voice is muted

    def _send(self, address: str, args) -> None:
        self.client.send_message(address, args)
        self.sent += 1

    def token(self, due: float, frame: Frame) -> None:
        import math

        args = [
            frame.index,
            frame.text,
            -frame.logprob,
            frame.entropy,
            math.exp(min(frame.logprob, 0.0)),
            sum(frame.attention.entropy) / max(len(frame.attention.entropy), 1),
            sum(frame.attention.distance) / max(len(frame.attention.distance), 1),
            frame.rank,
        ]
        layers, attention = list(frame.layers.update), list(frame.attention.entropy)

        def send() -> None:
            self._send("/sonify/token", args)
            self._send("/sonify/layers", layers)
            self._send("/sonify/attention", attention)

        self.scheduler.at(due, send)

    def note(self, due: float, note: Note) -> None:
        def send() -> None:
            if self.mute is None or not self.mute(note):
                self._send("/sonify/note", [note.voice, note.pitch, note.velocity, note.duration])

        self.scheduler.at(due, send)

    def control(self, param: str, value: float | str) -> None:
        """A parameter a controller moved, sent now (a preset's name as a string)."""
        self._send("/sonify/control", [param, value if isinstance(value, str) else float(value)])

    def event(self, due: float, name: str) -> None:
        self.scheduler.at(due, lambda: self._send(f"/sonify/{name}", []))
