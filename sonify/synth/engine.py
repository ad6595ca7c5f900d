"""The block engine: plays a Score's notes and controls through the instruments and effects.

``process(frames)`` returns the next block of stereo samples; the offline render calls it
with the whole piece, live audio with a few hundred frames at a time, and both get the same
samples. Notes start on the exact sample of their time. Each voice has a polyphony limit;
a stolen note, or a note struck again at the same pitch, fades out over 5 ms instead of
stopping dead, so nothing clicks.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.signal import butter

from ..music.preset import Synth
from ..music.score import Control, Note, Score, VoiceInfo
from .dsp import db, midi_hz, pan_gains
from .effects import Echo, Reverb
from .filters import lfilter_spans
from .instruments import INSTRUMENTS
from .voice import CONTROL_GLIDE_SECONDS, STEAL_SECONDS, ControlLanes, Envelopes, Instrument, SoundingNote, ToneCache

HEADROOM = 0.25  # the mix stays well below full scale; the master chain sets the level
SUB = 16384  # frames the pan, sends and echo handle at a time (64 kB a row: within the core's cache)


class SynthEngine:
    """Renders Scores block by block with state carried across blocks."""

    def __init__(
        self,
        settings: Synth,
        tempo_bpm: float,
        voices: Iterable[VoiceInfo],
        sample_rate: int | None = None,
    ):
        self.sample_rate = int(sample_rate or settings.sample_rate)
        self.settings = settings
        self.voices = {v.name: v for v in voices}
        self.lanes = ControlLanes(self.sample_rate)
        self.tones = ToneCache()  # notes of one pitch (and velocity) read one oscillator's samples
        self.envelopes = Envelopes()  # the notes of a chord read one envelope
        self.reverb = Reverb(self.sample_rate, settings.reverb_seconds, damping=0.55 - 0.4 * settings.brightness)
        self.echo = Echo(self.sample_rate, settings.delay_beats * 60.0 / tempo_bpm, settings.delay_feedback)
        self.pending: list[tuple[int, int, SoundingNote]] = []  # (start, order, note), sorted
        self.active: list[SoundingNote] = []
        self.by_voice: dict[str, list[SoundingNote]] = {}
        self.position = 0
        # Events handed over after their moment was already rendered (live: the player fell
        # behind the sound card), and the earliest such moment, a sample: the audio from there
        # on is not the offline render's.
        self.late = 0
        self.first_late: int | None = None
        self.last_end = 0
        self._order = 0
        self.bus_filters: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for voice in self.voices.values():
            cutoff = INSTRUMENTS[voice.instrument].bus_cutoff
            if cutoff is not None:
                b, a = butter(2, min(cutoff(settings.brightness), 0.45 * self.sample_rate) / (self.sample_rate / 2.0))
                self.bus_filters[voice.name] = (b.astype(np.float32), a.astype(np.float32), np.zeros(2, dtype=np.float32))
        self.open_notes: dict[tuple, SoundingNote] = {}
        self._wet = np.empty(0, dtype=np.float32)  # the reverb send, reused
        self._rows = np.empty((4, SUB), dtype=np.float32)  # dry left and right, reverb and echo send: one piece
        self._products = np.empty((4, SUB), dtype=np.float32)  # a bus times its gains, one piece
        self._echoes = np.empty((2, SUB), dtype=np.float32)  # the echo's output, one piece
        self._echo_fed = False  # whether a voice has sent to the echo yet (until then it is silent)
        self._later: Iterator[Note] = iter(())  # a Score's notes not taken up yet (for_score), in order
        self._next: Note | None = None
        self._later_controls: Iterator[Control] | None = None  # a Score's controls not taken up yet
        self._next_control: Control | None = None

    @classmethod
    def for_score(cls, score: Score, settings: Synth, sample_rate: int | None = None) -> SynthEngine:
        """An engine that plays ``score`` from its start: each note is taken up only as the
        block it starts in is rendered (``schedule`` up front would hold a sounding note per
        note of the piece), in the Score's order, so the same notes steal the same notes;
        each control change a glide ahead of its time (a change reshapes the glide before it),
        and the control points already played are dropped."""
        engine = cls(settings, score.tempo.changes[0].bpm, score.voices, sample_rate)
        engine._later = iter(score.notes)
        engine._next = next(engine._later, None)
        engine._later_controls = iter(score.controls)
        engine._next_control = next(engine._later_controls, None)
        for note in score.notes:
            voice = engine.voices[note.voice]
            start = round(note.time * engine.sample_rate)
            engine.last_end = max(engine.last_end, start + engine._length(INSTRUMENTS[voice.instrument], note.duration))
        return engine

    def schedule(self, notes: Iterable[Note], controls: Iterable[Control] = (), offset: int = 0) -> None:
        """Add notes and control changes (none earlier than the current block), each
        ``offset`` samples after its Score time (live audio starts the Score mid-stream)."""
        for control in controls:
            self._note_if_late(round(control.time * self.sample_rate) + offset)
            self.lanes.add(control, offset)
        for note in notes:
            self._note_if_late(round(note.time * self.sample_rate) + offset)
            self._add(note, offset=offset)

    def open(self, note: Note, offset: int = 0) -> None:
        """Start a note whose end is not known yet (live: the drone, a phrase's organ note)."""
        self._note_if_late(round(note.time * self.sample_rate) + offset)
        self._add(note, open_ended=True, offset=offset)

    def close(self, note: Note) -> None:
        """Give an opened note its end (``note.duration``); call before the playhead gets there."""
        sounding = self.open_notes.pop((note.voice, note.pitch, note.token, note.time), None)
        if sounding is None or sounding.stolen_at is not None:
            return
        sounding.gate = max(note.duration, 0.0)
        sounding.end = sounding.start + self._length(sounding.instrument, sounding.gate)
        self._note_if_late(sounding.start + round(sounding.gate * self.sample_rate))
        self.last_end = max(self.last_end, sounding.end)

    def _note_if_late(self, moment: int) -> None:
        """Count an event handed over (``schedule``, ``open``, ``close``) for a sample already rendered."""
        if moment < self.position:
            self.late += 1
            self.first_late = moment if self.first_late is None else min(self.first_late, moment)

    def _add(self, note: Note, open_ended: bool = False, offset: int = 0) -> None:
        voice = self.voices[note.voice]
        instrument = INSTRUMENTS[voice.instrument]
        sr = self.sample_rate
        start = round(note.time * sr) + offset
        gate = float("inf") if open_ended else max(note.duration, 0.0)
        velocity = note.velocity / 127.0
        level = HEADROOM * db(voice.gain) * instrument.level * velocity**1.5
        sounding = SoundingNote(
            note=note,
            instrument=instrument,
            start=start,
            gate=gate,
            end=2**62 if open_ended else start + self._length(instrument, gate),
            freq=midi_hz(note.pitch),
            brightness=self.settings.brightness,
            velocity=velocity,
            sample_rate=sr,
            level=np.float32(level),
            controllers=voice.controllers,
            lanes=self.lanes,
            tones=self.tones,
            envelopes=self.envelopes,
        )
        self._steal_for(sounding)
        if open_ended:
            self.open_notes[(note.voice, note.pitch, note.token, note.time)] = sounding
        bisect.insort(self.pending, (start, self._order, sounding), key=lambda e: (e[0], e[1]))
        self._order += 1
        self.by_voice.setdefault(note.voice, []).append(sounding)
        if not open_ended:
            self.last_end = max(self.last_end, sounding.end)

    def _length(self, instrument: Instrument, gate: float) -> int:
        """Samples a note held ``gate`` seconds sounds, its release included."""
        return int(np.ceil((max(gate, 0.0) + max(instrument.release, 0.005)) * self.sample_rate)) + 1

    def _steal_for(self, new: SoundingNote) -> None:
        """Fade out the notes this one replaces: the same pitch still sounding, and over the
        polyphony limit the earliest released, then the oldest."""
        playing = [s for s in self.by_voice.get(new.note.voice, []) if s.end > new.start and s.stolen_at is None]
        self.by_voice[new.note.voice] = playing
        victims = [s for s in playing if s.note.pitch == new.note.pitch]
        over = len(playing) - len(victims) + 1 - new.instrument.polyphony
        if over > 0:
            # Over the limit: notes already in their release go first (the earliest released
            # first), then the oldest held ones, so a tone held across a chord change goes on.
            released = sorted(
                (s for s in playing if s not in victims and s.start + s.gate * self.sample_rate <= new.start),
                key=lambda s: s.start + s.gate * self.sample_rate,
            )
            victims += (released + [s for s in playing if s not in victims and s not in released])[:over]
        for s in victims:
            s.stolen_at = (new.start - s.start) / self.sample_rate
            s.end = min(s.end, new.start + int(np.ceil(STEAL_SECONDS * self.sample_rate)) + 1)

    @property
    def tail_seconds(self) -> float:
        """How long after the last note ends the effects still ring (to -60 dB)."""
        echo = 0.0
        if self.settings.delay_feedback > 0:
            echo = self.echo.length / self.sample_rate * (1 + np.log(1e-3) / np.log(self.settings.delay_feedback))
        return max(self.settings.reverb_seconds, echo)

    def length_for(self, score_end: float) -> int:
        """Samples in a render of a score ending at ``score_end`` seconds, its tail included."""
        return max(self.last_end, round(score_end * self.sample_rate)) + round(self.tail_seconds * self.sample_rate)

    def process(self, frames: int) -> np.ndarray:
        """The next ``frames`` samples, (frames, 2) float32."""
        return self._effects(self._voices(frames), frames)

    def dry(self, frames: int) -> dict[str, np.ndarray]:
        """The next ``frames`` samples of each voice's bus, mono, before pan and effects
        (for analysis; a voice with no note in the block may be missing)."""
        return self._voices(frames)

    def blocks(self, total: int, size: int = 65536, into: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """The next ``total`` samples in blocks of ``size``, the same samples ``process``
        gives; the notes of the next block render in a worker thread while the effects
        of this one run, so an offline render uses two cores. ``into``: a (2, total)
        float32 array the blocks are made in (each block a view of it), for a caller that
        keeps them all: one allocation instead of a fresh one, page by page, per block."""
        sizes = [min(size, total - start) for start in range(0, total, size)]
        if not sizes:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="sonify-voices") as ahead:
            future = ahead.submit(self._voices, sizes[0])
            done = 0
            for k, frames in enumerate(sizes):
                buses = future.result()
                if k + 1 < len(sizes):
                    future = ahead.submit(self._voices, sizes[k + 1])
                elif self.tones is not None:
                    self.tones.clear()  # the last block's notes are made: give the shared tones back now
                yield self._effects(buses, frames, None if into is None else into[:, done : done + frames])
                done += frames

    def _voices(self, frames: int) -> dict[str, np.ndarray]:
        """Each voice's notes summed into one mono bus (level applied) for the next block."""
        b0, b1 = self.position, self.position + frames
        self.position = b1
        self.lanes.block(b0, frames)
        while self._next is not None and round(self._next.time * self.sample_rate) < b1:
            self._add(self._next)
            self._next = next(self._later, None)
        if self._later_controls is not None:
            ahead = b1 + int(np.ceil(CONTROL_GLIDE_SECONDS * self.sample_rate)) + 1
            while self._next_control is not None and round(self._next_control.time * self.sample_rate) < ahead:
                self.lanes.add(self._next_control)
                self._next_control = next(self._later_controls, None)
            self.lanes.forget_before(b0)
        while self.pending and self.pending[0][0] < b1:
            self.active.append(self.pending.pop(0)[2])
        buses: dict[str, np.ndarray] = {}
        spans: dict[str, list[tuple[int, int]]] = {}  # where each bus has notes
        for s in self.active:
            lo, hi = max(b0, s.start), min(b1, s.end)
            if lo >= hi:
                continue
            bus = buses.get(s.note.voice)
            if bus is None:
                bus = buses[s.note.voice] = np.zeros(frames, dtype=np.float32)
            s.add_to(bus[lo - b0 : hi - b0], lo - s.start, hi - s.start)
            spans.setdefault(s.note.voice, []).append((lo - b0, hi - b0))
        self.active = [s for s in self.active if s.end > b1]
        for name, (b, a, state) in self.bus_filters.items():
            # Run through silences too (the filter rings on), until its memory has died away.
            bus, state = lfilter_spans(b, a, buses.get(name), state, spans.get(name, ()), b0, frames)
            if bus is not None:
                buses[name] = bus
            self.bus_filters[name] = (b, a, state)
        return buses

    def _plan(self, buses: dict[str, np.ndarray]) -> list[tuple[np.ndarray, int, int, np.ndarray]]:
        """What each bus adds to the four rows (dry left, dry right, reverb send, echo send):
        ``(bus, first, end, gains)`` for each run of rows ``first:end`` the voice's gains are
        nonzero in, ``gains`` a float32 column (the floats ``into += gain * bus`` uses), so a
        run is one product and one sum; the runs in the order of the buses."""
        plan = []
        for name, bus in buses.items():
            voice = self.voices[name]
            gains = (*pan_gains(voice.pan), voice.reverb, voice.delay)
            first = 0
            while first < len(gains):
                end = first
                while end < len(gains) and gains[end]:
                    end += 1
                if end > first:
                    plan.append((bus, first, end, np.array(gains[first:end], dtype=np.float32)[:, None]))
                first = end + 1
        return plan

    def _echo_runs(self, plan: list[tuple[np.ndarray, int, int, np.ndarray]]) -> bool:
        """Whether the echo runs in this block: once a voice has sent to it (``plan``'s row 3).
        Until then it holds zeros and gives zeros, and adding +0.0 to a sum that started at
        +0.0 changes no bit: it is left out (its clock still runs)."""
        self._echo_fed = self._echo_fed or any(end == 4 for _, _, end, _ in plan)
        return self._echo_fed

    def _effects(self, buses: dict[str, np.ndarray], frames: int, dry: np.ndarray | None = None) -> np.ndarray:
        """Pan and send each voice's bus, run the echo, reverb and master tone: (frames, 2).

        The pan, the sends and the echo run over SUB frames at a time, every voice through
        one piece before the next, so their buffers stay in the core's cache instead of
        streaming each block's megabytes through memory once per voice and gain; every sample
        gets the same operations in the same order as over the whole block. ``dry``: the
        (2, frames) array to make the block in."""
        dry = np.empty((2, frames), dtype=np.float32) if dry is None else dry
        if self._wet.size < frames:
            # Kept from block to block: fresh 1 MB temporaries cost a page fault every 4 kB.
            self._wet = np.empty(frames, dtype=np.float32)
        wet_reverb = self._wet[:frames]
        plan = self._plan(buses)
        echoing = self._echo_runs(plan)
        for lo in range(0, frames, SUB):
            hi = min(lo + SUB, frames)
            rows, products = self._rows[:, : hi - lo], self._products[:, : hi - lo]
            (rows if echoing else rows[:3]).fill(0.0)
            for bus, first, end, gains in plan:
                into = rows[first:end]
                into += np.multiply(bus[lo:hi], gains, out=products[: end - first])
            if echoing:
                self._echo_into(rows)
            else:
                self.echo.pass_silence(hi - lo)
            dry[:, lo:hi] = rows[:2]
            wet_reverb[lo:hi] = rows[2]
        self.reverb.process(wet_reverb, add_to=dry, scale=np.float32(self.settings.reverb_mix * 2.0))
        return dry.T

    def _echo_into(self, rows: np.ndarray) -> None:
        """Run the echo on one piece's echo send (row 3) and add it to the dry rows and, a
        quarter of each echo (the mean of both sides, half as loud), to the reverb send."""
        echo = self._echoes[:, : rows.shape[1]]
        self.echo.process(rows[3], out=echo)
        rows[:2] += echo
        echo[0] += echo[1]
        echo[0] *= np.float32(0.25)
        rows[2] += echo[0]
