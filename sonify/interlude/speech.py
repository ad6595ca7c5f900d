"""Speech for the spoken reading: espeak-ng through its C library (word timings included),
or a recording the user brings with its transcript."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SonifyError

ESPEAK_LIBRARY = "libespeak-ng.so.1"
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_EVENT_WORD = 1
_RATE = 1
_lock = threading.Lock()  # espeak-ng keeps global state: one synthesis at a time


@dataclass(frozen=True)
class SpokenWord:
    """A word of the text: where it is in the text (characters) and when it is spoken (seconds)."""

    text: str
    char_start: int
    char_end: int
    start: float
    end: float


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray  # mono float32
    sample_rate: int
    words: tuple[SpokenWord, ...]
    text: str

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / self.sample_rate


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def _library() -> ctypes.CDLL:
    name = os.environ.get("SONIFY_ESPEAK_LIBRARY", ESPEAK_LIBRARY)
    try:
        return ctypes.CDLL(name)
    except OSError:
        found = ctypes.util.find_library("espeak-ng") if "SONIFY_ESPEAK_LIBRARY" not in os.environ else None
        if found:
            return ctypes.CDLL(found)
    raise SonifyError(
        f"the spoken reading needs espeak-ng's library ({name} not found): on Debian apt-get install libespeak-ng1; "
        "or bring a recording with --voice-file FILE.wav"
    )


def espeak(text: str, voice: str = "en", words_per_minute: int = 160) -> Speech:
    """Speak ``text`` with espeak-ng: the audio and each word's time."""
    lib = _library()
    chunks: list[np.ndarray] = []
    events: list[tuple[int, int, int]] = []

    def collect(wav, count, event_pointer) -> int:
        if count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        k = 0
        while event_pointer[k].type != 0:
            e = event_pointer[k]
            if e.type == _EVENT_WORD:
                events.append((e.text_position, e.length, e.audio_position))
            k += 1
        return 0

    callback = _CALLBACK(collect)
    with _lock:
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0)
        if rate <= 0:
            raise SonifyError("espeak-ng did not start (its data files may be missing: apt-get install espeak-ng-data)")
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise SonifyError(f"espeak-ng has no voice {voice!r}; list them with espeak-ng --voices")
        lib.espeak_SetParameter(_RATE, int(words_per_minute), 0)
        data = text.encode("utf-8")
        buffer = ctypes.create_string_buffer(data)
        if lib.espeak_Synth(buffer, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None) != 0:
            raise SonifyError("espeak-ng could not speak the text")
        lib.espeak_Synchronize()
    audio = (np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)).astype(np.float32) / 32768.0
    words = _words_from_events(text, events, audio.size / rate)
    return Speech(audio, int(rate), _trim_to_voice(words, audio, int(rate)), text)


def voiced_frames(audio: np.ndarray, sample_rate: int, hop_seconds: float = 0.01) -> tuple[np.ndarray, int]:
    """Per 10 ms frame, whether a voice is heard (within 40 dB of the loudest frame)."""
    hop = max(1, int(sample_rate * hop_seconds))
    frames = audio[: audio.size // hop * hop].reshape(-1, hop)
    level = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    return level > max(level.max() * 0.01, 1e-5), hop


def _trim_to_voice(words: tuple[SpokenWord, ...], audio: np.ndarray, rate: int) -> tuple[SpokenWord, ...]:
    """End each word where its sound ends, not at the next word (pauses are not words)."""
    voiced, hop = voiced_frames(audio, rate)
    out = []
    for w in words:
        a, b = int(w.start * rate / hop), int(np.ceil(w.end * rate / hop))
        heard = np.flatnonzero(voiced[a:b])
        end = (a + heard[-1] + 1) * hop / rate if heard.size else w.end
        out.append(SpokenWord(w.text, w.char_start, w.char_end, w.start, float(min(max(end, w.start + 0.01), w.end))))
    return tuple(out)


def _words_from_events(text: str, events: list[tuple[int, int, int]], duration: float) -> tuple[SpokenWord, ...]:
    """Words from espeak's events (1-based character position, length, time in ms); each word
    ends where the next begins (or the speech ends), less the silence espeak leaves."""
    starts: list[tuple[int, int, float]] = []
    for position, length, ms in events:
        first = max(position - 1, 0)
        last = min(first + max(length, 1), len(text))
        # espeak-ng also reports pauses (a line break) as words, sometimes out of order: skip them.
        if not text[first:last].strip() or (starts and first <= starts[-1][0]):
            continue
        starts.append((first, last, ms / 1000.0))
    words = []
    for k, (first, last, start) in enumerate(starts):
        end = starts[k + 1][2] if k + 1 < len(starts) else duration
        words.append(SpokenWord(text[first:last], first, last, start, max(end, start)))
    return tuple(words)


def recording(path: str | os.PathLike, transcript: str) -> Speech:
    """A recording of ``transcript`` read aloud: word times estimated from where the voice
    is (no speech recogniser): the voiced stretches are shared among the words in order, by
    their length in characters."""
    import soundfile

    path = Path(path)
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as exc:
        raise SonifyError(f"cannot read the voice file {path} ({exc}); give a WAV or FLAC file") from None
    if audio.size == 0:
        raise SonifyError(f"the voice file {path} holds no samples; give a recording of the text")
    if not np.isfinite(audio).all():
        raise SonifyError(f"the voice file {path} holds samples that are not numbers (NaN or infinity); export it again")
    mono = audio.mean(axis=1)
    tokens = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", transcript)]
    if not tokens:
        raise SonifyError("the transcript of the voice file holds no words")
    voiced, hop = voiced_frames(mono, rate)
    times = np.flatnonzero(voiced)
    if times.size == 0:
        raise SonifyError(f"{path} holds no audible voice")
    # Voiced 10 ms frames, in order; each word gets a share proportional to its characters.
    weights = np.array([len(t) for t, _, _ in tokens], dtype=float)
    bounds = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()]) * (times.size - 1)
    words = []
    for k, (word, first, last) in enumerate(tokens):
        a, b = times[int(round(bounds[k]))], times[int(round(bounds[k + 1]))]
        words.append(SpokenWord(word, first, last, a * hop / rate, max(b, a + 1) * hop / rate))
    return Speech(mono.astype(np.float32), int(rate), tuple(words), transcript)
