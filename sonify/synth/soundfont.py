"""The SoundFont engine: the same Score played by FluidSynth with a .sf2 the user names,
for General MIDI timbres. Events land on their exact sample; the master chain is ours."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SonifyError
from ..music.preset import Synth
from ..music.score import Score
from .dsp import db
from .master import master

TAIL_SECONDS = 2.0


def _fluidsynth():
    try:
        import fluidsynth
    except ImportError:
        raise SonifyError("the SoundFont engine needs pyfluidsynth: pip install pyfluidsynth (and libfluidsynth3)") from None
    except OSError as exc:  # the Python package is there, the C library is not
        raise SonifyError(f"FluidSynth's library is missing ({exc}); on Debian: apt-get install libfluidsynth3") from None
    return fluidsynth


def render_soundfont(
    score: Score, soundfont: str | os.PathLike, settings: Synth, sample_rate: int | None = None, finish: bool = True
) -> np.ndarray:
    """Render ``score`` through FluidSynth with ``soundfont``: (frames, 2) float32."""
    path = Path(soundfont)
    if not path.is_file():
        raise SonifyError(f"SoundFont {path} does not exist; name a .sf2 file (Debian: timgm6mb-soundfont)")
    fluidsynth = _fluidsynth()
    sr = int(sample_rate or settings.sample_rate)
    synth = fluidsynth.Synth(samplerate=float(sr), gain=0.5)
    try:
        font = synth.sfload(str(path))
        if font < 0:
            raise SonifyError(f"{path} is not a SoundFont FluidSynth can load")
        for voice in score.voices:
            synth.program_select(voice.channel, font, 128 if voice.channel == 9 else 0, voice.program)
            synth.cc(voice.channel, 7, int(np.clip(round(100 * db(voice.gain)), 0, 127)))
            synth.cc(voice.channel, 10, int(np.clip(round(64 + 63 * voice.pan), 0, 127)))
            synth.cc(voice.channel, 91, int(round(127 * voice.reverb)))
        events: list[tuple[int, int, tuple]] = []
        for note in score.notes:
            start = round(note.time * sr)
            stop = max(start + 1, round((note.time + note.duration) * sr))
            events.append((start, 2, ("on", note.channel, note.pitch, note.velocity)))
            events.append((stop, 0, ("off", note.channel, note.pitch)))
        for control in score.controls:
            events.append((round(control.time * sr), 1, ("cc", control.channel, control.controller, control.value)))
        events.sort(key=lambda e: (e[0], e[1]))
        chunks, position = [], 0
        for sample, _, event in events:
            if sample > position:
                chunks.append(synth.get_samples(sample - position))
                position = sample
            if event[0] == "on":
                synth.noteon(*event[1:])
            elif event[0] == "off":
                synth.noteoff(*event[1:])
            else:
                synth.cc(*event[1:])
        end = max(position, round(score.end * sr)) + round(TAIL_SECONDS * sr)
        chunks.append(synth.get_samples(end - position))
    finally:
        synth.delete()
    audio = (np.concatenate(chunks).astype(np.float32) / 32768.0).reshape(-1, 2)
    return master(audio, sr, settings.loudness, settings.ceiling) if finish else audio
