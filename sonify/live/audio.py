"""Live audio: our synthesizer in the sound card's callback, in small blocks.

A thread renders blocks a few ahead of the sound card with the same engine the offline
render uses (then the live gain and the streaming limiter); the callback only hands them
over. Sample k of the engine is the k-th sample the card plays, so notes keep their exact
sample positions.
"""

from __future__ import annotations

import collections
import queue
import threading
import time

import numpy as np

from ..errors import SonifyError
from ..music.preset import Synth
from ..music.score import Control, Note, VoiceInfo
from ..synth.dsp import db
from ..synth.engine import SynthEngine
from ..synth.master import Limiter
from .realtime import RENDER_PRIORITY, ask_realtime

# The mix sits about this far under the preset's loudness target before the live gain;
# measured on the presets' offline renders (raw -26 to -34 LUFS), so live audio lands
# near the same loudness without seeing the whole piece.
LIVE_GAIN_DB = 10.0
BUSY_KEPT = 65536  # callback and render timings kept (about 6 minutes of 256-sample blocks)
# Blocks rendered in one go: the engine's cost is mostly Python per call, not per sample
# (measured at the soak's 30x pace, CPU per 256 frames: 1.5 ms rendering 256 at a time,
# 0.93 ms 512 at a time, 0.56 ms 1024 at a time), and the renderer holds the GIL for all
# of it, which the MIDI scheduler's thread then waits for.
RENDER_CHUNK = 2


def sounddevice_module():
    try:
        import sounddevice
    except ImportError:
        raise SonifyError("live audio needs sounddevice: pip install sounddevice") from None
    except OSError:
        raise SonifyError("live audio needs the PortAudio library: on Debian apt-get install libportaudio2") from None
    return sounddevice


def default_output(device: str | int | None = None) -> dict:
    sd = sounddevice_module()
    try:
        return sd.query_devices(device, "output")
    except Exception:
        pass
    # PortAudio lists devices once, when it starts: look again for a server started since.
    sd._terminate()
    sd._initialize()
    try:
        return sd.query_devices(device, "output")
    except Exception:
        outputs = [d["name"] for d in sd.query_devices() if d["max_output_channels"] > 0]
        if device is not None and outputs:
            raise SonifyError(f"no audio output {device!r}; available: {', '.join(outputs)}") from None
        raise SonifyError(
            "no audio output device found; on Linux start a JACK server (e.g. jackd -d alsa, or jackd -d dummy "
            "without a sound card) or PulseAudio/PipeWire; on macOS check System Settings > Sound"
        ) from None


class AudioOut:
    """Plays notes through our synth on a sounddevice output stream."""

    def __init__(self, settings: Synth, tempo_bpm: float, voices: tuple[VoiceInfo, ...], block: int = 256,
                 device: str | int | None = None, record: bool = False, realtime: bool = False,
                 chunk: int = RENDER_CHUNK):  # fmt: skip
        """``realtime``: the renderer's thread asks for real-time scheduling (``realtime.ask_realtime``;
        ``self.realtime`` says whether it got it). The sound card's callback runs in the audio
        server's thread, real-time where the server is. ``chunk``: blocks rendered at a time."""
        self.sd = sounddevice_module()
        info = default_output(device)
        self.device = device
        self.sample_rate = int(info["default_samplerate"])
        self.block = block
        self.engine = SynthEngine(settings, tempo_bpm, voices, sample_rate=self.sample_rate)
        self.limiter = Limiter(self.sample_rate, settings.ceiling)
        self.gain = np.float32(db(LIVE_GAIN_DB + settings.loudness + 16.0))
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.xruns = 0
        self.xrun_times: collections.deque[float] = collections.deque(maxlen=BUSY_KEPT)  # monotonic, the latest
        # Seconds each of the latest callbacks took, and each of the latest blocks took to
        # render (a bounded window: a performance of any length keeps the same memory).
        self.busy: collections.deque[float] = collections.deque(maxlen=BUSY_KEPT)
        self.render_busy: collections.deque[float] = collections.deque(maxlen=BUSY_KEPT)
        # Blocks are rendered this far ahead of the sound card, in a thread of their own:
        # a render that waits for the GIL now and then does not reach the listener. The
        # player schedules notes far further ahead than this (its latency and lead).
        # With ``chunk`` blocks rendered at a time, a chunk is rendered once no more than
        # ``ahead - chunk`` (at least 3) blocks wait: the same margin for the renderer as
        # one block at a time with 4 ahead, and still far less than the player's lead.
        self.chunk = max(int(chunk), 1)
        self.ahead = 3 + self.chunk
        self.ready: collections.deque = collections.deque()
        self.wake = threading.Event()
        self.starved = 0
        self._running = False
        self.record = record
        self.recorded: list[np.ndarray] = []
        self.zero_time: float | None = None  # monotonic time at which sample 0 is heard
        self.fading = 0
        self.stream = None
        self._want_realtime = realtime
        self.realtime = False

    @property
    def delay(self) -> float:
        """Seconds the limiter holds the signal back; notes are scheduled this much earlier."""
        return self.limiter.delay / self.sample_rate

    def start(self) -> float:
        """Open the stream (once); returns the monotonic time at which its first sample is heard."""
        if self.stream is not None and self.zero_time is not None:
            return self.zero_time
        self._running = True
        while len(self.ready) < self.ahead:
            self._render_block()
        self._renderer = threading.Thread(target=self._render_loop, name="sonify-audio-render", daemon=True)
        self._renderer.start()
        try:
            self.stream = self.sd.OutputStream(
                samplerate=self.sample_rate, blocksize=self.block, channels=2, dtype="float32",
                device=self.device, callback=self._callback, latency="low",
            )  # fmt: skip
            self.stream.start()
        except Exception as exc:
            self._running = False
            raise SonifyError(f"cannot open the audio output ({exc}); check the device, or start JACK") from None
        deadline = time.monotonic() + 2.0
        while self.zero_time is None and time.monotonic() < deadline:
            time.sleep(0.001)
        if self.zero_time is None:
            raise SonifyError("the audio output does not run (no callback within 2 s); is the audio server running?")
        return self.zero_time

    def _callback(self, outdata, frames, time_info, status) -> None:
        """Hands over a block rendered ahead: no synthesis here, so the GIL is held only briefly."""
        began = time.perf_counter()
        if self.zero_time is None:
            self.zero_time = time.monotonic() + self.stream.latency
        if status.output_underflow:
            self.xruns += 1
            self.xrun_times.append(time.monotonic())
        try:
            block = self.ready.popleft()
        except IndexError:
            outdata.fill(0.0)
            self.starved += 1
            self.xruns += 1
            self.xrun_times.append(time.monotonic())
        else:
            outdata[:] = block
        self.wake.set()
        self.busy.append(time.perf_counter() - began)

    def _render_loop(self) -> None:
        if self._want_realtime:
            self.realtime = ask_realtime(RENDER_PRIORITY, "the synth's renderer")
        while self._running:
            while self._running and len(self.ready) <= self.ahead - self.chunk:
                self._render_block()
            self.wake.wait(0.01)
            self.wake.clear()

    def _render_block(self) -> None:
        """The next ``chunk`` blocks: take the queued notes, synthesize, apply the gain and
        the limiter, and hand them on a block at a time."""
        began = time.perf_counter()
        while True:
            try:
                kind, item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "notes":
                self.engine.schedule(*item)
            elif kind == "open":
                self.engine.open(*item)
            else:
                self.engine.close(item)
        frames = self.block * self.chunk
        block = self.engine.process(frames)
        self.engine.lanes.forget_before(self.engine.position)  # the control curves behind the playhead
        block *= self.gain
        out = self.limiter.process(block)
        if self.fading > 0:
            ramp = np.clip((self.fading - np.arange(frames)) / (0.05 * self.sample_rate), 0.0, 1.0).astype(np.float32)
            out *= ramp[:, None]
            self.fading = max(self.fading - frames, 0) or -1
        elif self.fading < 0:
            out[:] = 0.0
        if self.record:
            self.recorded.append(out.copy())
        self.render_busy.append(time.perf_counter() - began)
        self.ready.extend(out[k : k + self.block] for k in range(0, frames, self.block))

    def _samples(self, offset: float) -> int:
        """Score time 0 as a sample of the stream, ``offset`` seconds in, limiter delay allowed for."""
        return round((offset - self.delay) * self.sample_rate)

    def schedule(self, notes: list[Note], controls: list[Control], offset: float) -> None:
        """Notes and controls at their Score times + ``offset`` seconds of the stream's clock."""
        self.inbox.put(("notes", (notes, controls, self._samples(offset))))

    def open(self, note: Note, offset: float) -> None:
        self.inbox.put(("open", (note, self._samples(offset))))

    def close(self, note: Note) -> None:
        self.inbox.put(("close", note))

    def panic(self) -> None:
        """Fade everything out over 50 ms."""
        self.fading = int(0.05 * self.sample_rate)

    def stop(self) -> None:
        self._running = False
        self.wake.set()
        if self.stream is not None:
            self.stream.stop()
            self.stream.close()
            self.stream = None

    def recording(self) -> np.ndarray:
        return np.concatenate(self.recorded) if self.recorded else np.zeros((0, 2), dtype=np.float32)
