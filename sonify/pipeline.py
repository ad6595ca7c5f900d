"""From text to a finished piece: the stages joined up, as the command line uses them.

``render`` runs the model (or reads a saved trace), maps the frames to a Score with a
preset, and writes the audio, the MIDI file, the transcripts, the trace and, on request,
a plot. Everything is made in memory first and each file is written atomically, so an
interrupted render leaves no partial file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import SonifyError
from .fileio import atomic_write
from .frame import Frame
from .mapping import make_score, token_clock
from .preset import Preset, load_preset
from .sampling import SamplerSettings
from .score import Score, TempoMap
from .trace import Trace

OUTPUTS = ("audio", "midi", "srt", "vtt", "lrc", "json", "trace", "plot")
DEFAULT_OUTPUTS = ("audio", "midi", "srt", "vtt", "lrc", "json", "trace")
DEFAULT_TOKENS = 200
MAX_TOKENS_FOR_DURATION = 100_000


@dataclass
class Rendered:
    """What a render made: the Score, the trace it came from, and the files written by kind."""

    score: Score
    trace: Trace
    paths: dict[str, Path] = field(default_factory=dict)
    audio: np.ndarray | None = None
    sample_rate: int = 48000


def slug(text: str, words: int = 5) -> str:
    """A file name from the start of ``text``: ``Shall I compare thee`` → ``shall-i-compare-thee``."""
    parts = re.findall(r"[^\W_]+", text.lower())[:words]
    return "-".join(parts) or "generated"


def prepare_output_folder(folder: Path) -> Path:
    """Create ``folder`` if needed and check it can be written, before any work is done."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SonifyError(f"output folder {folder} is a file; choose another --out") from None
    except OSError as exc:
        raise SonifyError(f"cannot create output folder {folder}: {exc.strerror}; choose another --out") from None
    if not folder.is_dir():
        raise SonifyError(f"output folder {folder} is not a folder; choose another --out")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SonifyError(f"cannot write to {folder}: permission denied; choose another --out")
    return folder


def piece_end(frames: Sequence[Frame], preset: Preset) -> float:
    """When the Score of ``frames`` would end (its timing only: cheap)."""
    return token_clock(frames, preset, TempoMap.constant(preset.music.tempo)).end


def shortest_prefix(frames: Sequence[Frame], preset: Preset, seconds: float) -> int:
    """The fewest frames whose Score lasts at least ``seconds`` (all of them if none do)."""
    lo, hi = 1, len(frames)
    while lo < hi:
        mid = (lo + hi) // 2
        if piece_end(frames[:mid], preset) >= seconds:
            hi = mid
        else:
            lo = mid + 1
    return lo


def cut_trace(trace: Trace, preset: Preset, tokens: int | None = None, duration: float | None = None) -> Trace:
    """``trace`` with only its first ``tokens`` frames, or as many as ``duration`` seconds need."""
    if duration is not None:
        return Trace(trace.header, trace.frames[: shortest_prefix(trace.frames, preset, duration)])
    if tokens is not None:
        return Trace(trace.header, trace.frames[:tokens])
    return trace


def trace_name(path: str | os.PathLike) -> str:
    """``renders/the-sea.trace.jsonl`` → ``the-sea``: the name a re-render's files take."""
    return Path(path).name.removesuffix(".jsonl").removesuffix(".trace")


def run_model(
    *,
    prompt: str = "",
    text: str | None = None,
    model: str | os.PathLike | None = None,
    backend: str = "auto",
    window: int | None = None,
    threads: int | None = None,
    sampler: SamplerSettings | None = None,
    seed: int = 0,
    tokens: int | None = None,
    duration: float | None = None,
    preset: Preset | None = None,
    ignore_eos: bool = False,
    alternatives: int = 5,
    on_frame: Callable[[Frame], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
) -> Trace:
    """Generate from ``prompt`` (or read ``text``) until ``tokens`` tokens, or until the
    piece ``preset`` makes of them lasts ``duration`` seconds."""
    from .engine import Engine
    from .model import load_model

    check_length(tokens, duration)
    if duration is not None and preset is None:
        raise SonifyError("a duration needs the preset that sets the timing")
    sampler = sampler or SamplerSettings()
    loaded = load_model(model, backend=backend, window=window, threads=threads)
    engine = Engine(loaded, alternatives=alternatives)
    if text is not None:
        ids = loaded.tokenizer.encode(text)
        header = engine.header("read", text=text)
        stream, total = engine.read_ids(ids), len(ids)
    else:
        limit = tokens if tokens is not None else (MAX_TOKENS_FOR_DURATION if duration is not None else DEFAULT_TOKENS)
        ids = loaded.tokenizer.encode(prompt) if prompt else []
        header = engine.header("generate", prompt=prompt, sampler=sampler.to_dict(), seed=seed, max_tokens=limit)
        # Asked for a length, the model goes on past its end-of-text token.
        stop = not ignore_eos and duration is None
        stream = engine.generate(ids, max_tokens=limit, sampler=sampler, seed=seed, stop_at_eos=stop)
        total = None if duration is not None else len(ids) + limit
    if on_start is not None:
        on_start(total)
    frames: list[Frame] = []
    check_every = 32
    for frame in stream:
        frames.append(frame)
        if on_frame is not None:
            on_frame(frame)
        if duration is not None and len(frames) % check_every == 0 and piece_end(frames, preset) >= duration:
            break
    if duration is not None and frames:
        frames = frames[: shortest_prefix(frames, preset, duration)]
    return Trace(header, frames)


def check_length(tokens: int | None, duration: float | None) -> None:
    if tokens is not None and duration is not None:
        raise SonifyError("give either --tokens or --duration, not both")
    if tokens is not None and tokens < 1:
        raise SonifyError(f"--tokens has to be at least 1, but is {tokens}")
    if duration is not None and not (duration > 0 and np.isfinite(duration)):
        raise SonifyError(f"--duration has to be a positive number of seconds, but is {duration:g}")


def render_files(
    trace: Trace,
    preset: Preset,
    *,
    out: str | os.PathLike = "renders",
    name: str = "piece",
    outputs: Iterable[str] = DEFAULT_OUTPUTS,
    audio_format: str = "wav",
    subtype: str | None = None,
    sample_rate: int | None = None,
    soundfont: str | os.PathLike | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> Rendered:
    """Map ``trace`` with ``preset`` and write the chosen outputs into ``out``."""
    from .midifile import score_to_midi
    from .synth.render import SAMPLE_RATES, render_audio, write_audio
    from .synth.render import audio_format as check_format
    from .transcript import to_json, to_lrc, to_srt, to_vtt

    outputs = tuple(outputs)
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown:
        raise SonifyError(f"unknown output {unknown[0]!r}; choose from {', '.join(OUTPUTS)}")
    rate = int(sample_rate or preset.synth.sample_rate)
    if rate not in SAMPLE_RATES:
        raise SonifyError(f"sample rate {rate} Hz is not offered; use 44100 or 48000")
    folder = prepare_output_folder(Path(out))
    audio_path = folder / f"{name}.{audio_format}"
    if "audio" in outputs:
        check_format(audio_path, subtype)
    score = make_score(trace.frames, preset)
    result = Rendered(score, trace, sample_rate=rate)
    # Everything is made first; the files are written at the end, each atomically.
    made: dict[str, tuple[Path, bytes | str | None]] = {}
    if "audio" in outputs:
        if soundfont is not None:
            from .synth.soundfont import render_soundfont

            result.audio = render_soundfont(score, soundfont, preset.synth, rate)
        else:
            result.audio = render_audio(score, preset.synth, rate, progress=on_progress)
        made["audio"] = (audio_path, None)
    if "midi" in outputs:
        import io

        buffer = io.BytesIO()
        score_to_midi(score, title=name).save(file=buffer)
        made["midi"] = (folder / f"{name}.mid", buffer.getvalue())
    if "srt" in outputs:
        made["srt"] = (folder / f"{name}.srt", to_srt(score))
    if "vtt" in outputs:
        made["vtt"] = (folder / f"{name}.vtt", to_vtt(score))
    if "lrc" in outputs:
        made["lrc"] = (folder / f"{name}.lrc", to_lrc(score, title=name))
    if "json" in outputs:
        made["json"] = (folder / f"{name}.json", to_json(score))
    if "plot" in outputs:
        from .plot import plot_png

        made["plot"] = (folder / f"{name}.png", plot_png(trace.frames, score, title=f"{name} ({preset.name})"))
    for kind, (path, data) in made.items():
        if kind == "audio":
            write_audio(path, result.audio, rate, subtype)
        else:
            with atomic_write(path, "wb" if isinstance(data, bytes) else "w") as f:
                f.write(data)
        result.paths[kind] = path
    if "trace" in outputs:
        result.paths["trace"] = trace.write(folder / f"{name}.trace.jsonl")
    return result


def render(
    prompt: str = "",
    *,
    read: str | None = None,
    trace: Trace | str | os.PathLike | None = None,
    preset: str | Preset = "default",
    model: str | os.PathLike | None = None,
    backend: str = "auto",
    sampler: SamplerSettings | None = None,
    seed: int = 0,
    tokens: int | None = None,
    duration: float | None = None,
    out: str | os.PathLike = "renders",
    name: str | None = None,
    outputs: Iterable[str] = DEFAULT_OUTPUTS,
    audio_format: str = "wav",
    subtype: str | None = None,
    sample_rate: int | None = None,
    soundfont: str | os.PathLike | None = None,
) -> Rendered:
    """Text (or a prompt, or a saved trace) to a finished piece; the Python side of
    ``sonify render``. Returns the Score, the trace and the paths of the files written.

    ``read`` is a text to read; ``trace`` a Trace or a trace file to re-render without
    the model. ``outputs`` picks from audio, midi, srt, vtt, lrc, json, trace, plot."""
    chosen = preset if isinstance(preset, Preset) else load_preset(preset)
    if sum(x is not None and x != "" for x in (prompt or None, read, trace)) > 1:
        raise SonifyError("give one of a prompt, a text to read, or a trace")
    check_length(tokens, duration)
    prepare_output_folder(Path(out))
    if trace is not None:
        loaded = cut_trace(trace if isinstance(trace, Trace) else Trace.read(trace), chosen, tokens, duration)
        default_name = "trace" if isinstance(trace, Trace) else trace_name(trace)
    else:
        loaded = run_model(prompt=prompt, text=read, model=model, backend=backend, sampler=sampler, seed=seed,
                           tokens=tokens, duration=duration, preset=chosen)  # fmt: skip
        default_name = "reading" if read is not None else slug(prompt)
    if not loaded.frames:
        raise SonifyError("the trace holds no tokens; nothing to play")
    return render_files(loaded, chosen, out=out, name=name or default_name, outputs=outputs, audio_format=audio_format,
                        subtype=subtype, sample_rate=sample_rate, soundfont=soundfont)  # fmt: skip
