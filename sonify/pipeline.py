"""From text to a finished piece: the stages joined up, as the command line uses them.

``run_model`` runs the model (stage 1) into a Trace; ``render_files`` maps a Trace with a
preset (stage 2) and writes what the sinks make of the Score (stage 3): audio, MIDI,
transcripts, the trace, a plot. ``render`` does both, the Python side of ``sonify render``.
What a run needs is given as small frozen settings objects, so a new option is one field
in one place: ``ModelSettings`` (which model), ``Generation`` (sampling), ``Length`` (how
long) and ``OutputSettings`` (which files, where).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import heap
from .errors import SonifyError
from .model.frame import Frame
from .model.loader import ModelSettings
from .model.sampling import Generation
from .music.calibration import Calibration, shipped_calibration
from .music.mapping import Mapper, make_score, shortest_prefix
from .music.preset import Preset, load_preset
from .music.score import Score
from .outputs.files import OutputSet, atomic_write, prepare_output_folder, refuse_existing, slug
from .outputs.trace import Trace, trace_name

OUTPUTS = ("audio", "midi", "srt", "vtt", "lrc", "json", "trace", "plot", "page")
DEFAULT_OUTPUTS = ("audio", "midi", "srt", "vtt", "lrc", "json", "trace")
DEFAULT_TOKENS = 200
MAX_TOKENS_FOR_DURATION = 100_000
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
MAX_DURATION = 3 * 3600.0  # seconds: the longest piece a render starts without --max-duration
WORDS_PER_TOKEN = 0.75  # of English text, to estimate a generated text's words before it exists


def estimate_seconds(preset: Preset, text: str | None = None, tokens: int | None = None) -> float:
    """About how long the piece ``preset`` makes of ``text`` (or of ``tokens`` generated
    tokens) lasts, from the words and the preset's pace, before any work is done."""
    import re

    words = len(re.findall(r"\w+", text)) if text is not None else (tokens or 0) * WORDS_PER_TOKEN
    return 60.0 * words / preset.timing.words_per_minute


def check_size(seconds: float, limit: float | None, what: str = "the piece") -> None:
    """Refuse to start a piece estimated longer than ``limit`` seconds (memory grows with it)."""
    limit = MAX_DURATION if limit is None else limit
    if seconds > limit:
        raise SonifyError(
            f"{what} would last about {_clock(seconds)}, more than the limit of {_clock(limit)}; "
            "give a shorter text or --tokens, or raise --max-duration SECONDS"
        )


def _clock(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


@dataclass(frozen=True)
class Length:
    """How long a run goes: ``tokens`` tokens, or until the piece lasts ``duration`` seconds
    (at most one of them; neither: the command's default)."""

    tokens: int | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        if self.tokens is not None and self.duration is not None:
            raise SonifyError("give either --tokens or --duration, not both")
        if self.tokens is not None and self.tokens < 1:
            raise SonifyError(f"--tokens has to be at least 1, but is {self.tokens}")
        if self.duration is not None and not (self.duration > 0 and math.isfinite(self.duration)):
            raise SonifyError(f"--duration has to be a positive number of seconds, but is {self.duration:g}")


@dataclass(frozen=True)
class OutputSettings:
    """Which files a render writes, where, and in what audio format.

    ``name`` is the files' name without suffix (``None``: from the prompt or the file read);
    ``subtype`` a soundfile sample format (PCM_16, PCM_24, FLOAT; ``None``: 24-bit);
    ``sample_rate`` ``None`` takes the preset's; ``soundfont`` plays the Score through
    FluidSynth with that SoundFont instead of our synthesizer; ``page_audio`` is how the
    page (output ``page``) holds its sound: ``embed`` (Ogg Vorbis inside the page) or
    ``link`` (the audio file written beside it). ``overwrite`` False refuses to replace a
    file of the same name (the command line's default; ``--force`` sets it)."""

    folder: str | os.PathLike = "renders"
    name: str | None = None
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    audio_format: str = "wav"
    subtype: str | None = None
    sample_rate: int | None = None
    soundfont: str | os.PathLike | None = None
    page_audio: str = "embed"
    overwrite: bool = True

    def __post_init__(self) -> None:
        unknown = [o for o in self.outputs if o not in OUTPUTS]
        if unknown:
            raise SonifyError(f"unknown output {unknown[0]!r}; choose from {', '.join(OUTPUTS)}")
        if self.page_audio not in ("embed", "link"):
            raise SonifyError(f"page audio {self.page_audio!r} is not embed or link")
        if "page" in self.outputs and self.page_audio == "link" and "audio" not in self.outputs:
            raise SonifyError("a page that links its audio needs the audio file: drop --no-audio, or embed the audio in the page")
        object.__setattr__(self, "outputs", tuple(self.outputs))


@dataclass
class Rendered:
    """What a render made: the Score, the trace it came from, and the files written by kind."""

    score: Score
    trace: Trace
    paths: dict[str, Path] = field(default_factory=dict)
    frames: int = 0  # the audio's length in samples (0: no audio was made)
    sample_rate: int = 48000


def calibration_cache() -> Path:
    """Where calibrations of models whose folder cannot hold one are kept."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "sonify" / "calibration"


def _read_calibration(path: Path, sha256: str) -> Calibration | None:
    import json

    try:
        calibration = Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    return calibration if calibration.model_sha256 == sha256 else None


def calibrate(model, save: bool = True) -> tuple[Calibration, Path | None]:
    """Measure ``model``'s calibration over the reference text and keep it: in the model's
    folder where it can be written, else in the user's cache. Returns it and where it went."""
    import json

    from .model.engine import Engine
    from .model.sampling import SamplerSettings
    from .music.calibrate import ALTERNATIVES, GENERATED_TOKENS, measure, reference_prompt, reference_text

    engine = Engine(model, alternatives=ALTERNATIVES)
    runs = {
        "read": list(engine.read(reference_text())),
        "generated": list(
            engine.generate(reference_prompt(), GENERATED_TOKENS, SamplerSettings(), seed=0, include_prompt=False, stop_at_eos=False)
        ),
    }
    calibration = measure(runs, model.name, model.weights_digest())
    if not save:
        return calibration, None
    text = json.dumps(calibration.to_dict(), separators=(",", ":")) + "\n"
    for path in (model.folder / "calibration.json", calibration_cache() / f"{calibration.model_sha256}.json"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as f:
                f.write(text)
            return calibration, path
        except (OSError, SonifyError):
            continue
    return calibration, None


def calibration_for(model) -> Calibration:
    """``model``'s calibration: from its folder, from the cache, or measured now (once)."""
    sha = model.weights_digest()
    for path in (model.folder / "calibration.json", calibration_cache() / f"{sha}.json"):
        found = _read_calibration(path, sha)
        if found is not None:
            return found
    return calibrate(model)[0]


def trace_calibration(trace: Trace) -> tuple[Calibration, str]:
    """The calibration to map ``trace`` with, and where it came from: the one its header
    carries ("trace"); its model's, from the cache ("cache") or shipped ("shipped"); or, for
    a model sonify has no calibration of (a model behind a server), one measured from the
    trace's own words ("self": the piece is then scaled against itself)."""
    header = trace.header
    if isinstance(header.get("calibration"), dict):
        try:
            return Calibration.from_dict(header["calibration"]), "trace"
        except ValueError:
            pass
    sha = str(header.get("model_sha256", ""))
    shipped = shipped_calibration()
    if sha == shipped.model_sha256:
        return shipped, "shipped"
    found = _read_calibration(calibration_cache() / f"{sha}.json", sha) if sha else None
    if found is not None:
        return found, "cache"
    from .music.calibrate import measure

    present = {f.mode for f in trace.frames}
    modes = {mode: trace.frames for mode in ("read", "generated") if mode in present}
    if not modes:
        return shipped, "shipped"
    return measure(modes, str(header.get("model", "")), sha), "self"


def cut_trace(trace: Trace, preset: Preset, length: Length) -> Trace:
    """``trace`` with only its first ``length.tokens`` frames, or as many as ``length.duration`` seconds need."""
    if length.duration is not None:
        calibration, _ = trace_calibration(trace)
        return Trace(trace.header, trace.frames[: shortest_prefix(trace.frames, preset, length.duration, calibration)])
    if length.tokens is not None:
        return Trace(trace.header, trace.frames[: length.tokens])
    return trace


def run_model(
    prompt: str = "",
    *,
    text: str | None = None,
    model: ModelSettings | None = None,
    generation: Generation | None = None,
    length: Length | None = None,
    preset: Preset | None = None,
    on_frame: Callable[[Frame], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
) -> Trace:
    """Generate from ``prompt`` (or read ``text``) until ``length.tokens`` tokens, or until the
    piece ``preset`` makes of them lasts ``length.duration`` seconds. ``model.server`` set:
    the model behind that inference server.

    ``on_start(total)`` is called once the number of tokens is known (``None``: open-ended),
    ``on_frame(frame)`` after each token."""
    from .model.sources import StreamRequest, open_stream

    model = model or ModelSettings()
    generation = generation or Generation()
    length = length or Length()
    duration = length.duration
    if duration is not None and preset is None:
        raise SonifyError("a duration needs the preset that sets the timing")
    limit = length.tokens if length.tokens is not None else (MAX_TOKENS_FOR_DURATION if duration is not None else DEFAULT_TOKENS)
    # Asked for a length, the model goes on past its end-of-text token.
    stop = not generation.ignore_eos and duration is None
    opened = open_stream(model, StreamRequest(prompt, text, limit, generation, stop))
    stream, total = opened.frames, None if duration is not None and text is None else opened.total
    calibration = calibration_for(opened.model) if opened.model is not None else None
    if on_start is not None:
        on_start(total)
    frames: list[Frame] = []
    timing = Mapper(preset, calibration) if duration is not None else None
    for frame in stream:
        frames.append(frame)
        if on_frame is not None:
            on_frame(frame)
        if timing is not None:
            timing.feed(frame)
            if timing.end >= duration:
                break
    stream.close()  # a server stops generating what is no longer wanted
    header = opened.header()
    if calibration is not None:
        header["calibration"] = calibration.to_dict()
    return Trace(header, frames)


# Each output's file name after the render's name.
SUFFIXES = {
    "midi": ".mid", "srt": ".srt", "vtt": ".vtt", "lrc": ".lrc", "json": ".json", "trace": ".trace.jsonl",
    "plot": ".png", "page": ".html",
}  # fmt: skip


def output_paths(output: OutputSettings, name: str | None = None) -> dict[str, Path]:
    """The file each of ``output.outputs`` goes to (``name``: when ``output.name`` is None)."""
    name = output.name or name or "piece"
    folder = Path(output.folder)
    return {
        kind: folder / f"{name}{'.' + output.audio_format if kind == 'audio' else SUFFIXES[kind]}" for kind in output.outputs
    }


def check_outputs_free(output: OutputSettings, name: str | None = None) -> None:
    """Refuse, before any work, to replace files unless ``output.overwrite``."""
    if not output.overwrite:
        refuse_existing(output_paths(output, name).values())


def render_files(
    trace: Trace,
    preset: Preset,
    output: OutputSettings | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> Rendered:
    """Map ``trace`` with ``preset`` and write the chosen outputs into ``output.folder``.

    The files are written together (an OutputSet): all of them appear, or none does and
    earlier files are untouched. The audio is rendered block by block straight into its
    staged file (and into the page's Ogg encoder), so memory does not grow with the
    piece's length; the other outputs are made in memory afterwards, one at a time."""
    from .outputs.audio import AudioFile, check_sample_rate
    from .outputs.audio import audio_format as check_format
    from .outputs.ogg import OggEncoder

    output = output or OutputSettings()
    outputs, name = output.outputs, output.name or "piece"
    check_outputs_free(output)
    paths = output_paths(output)
    rate = int(output.sample_rate or preset.synth.sample_rate)
    check_sample_rate(rate)
    folder = prepare_output_folder(output.folder)
    audio_path = folder / f"{name}.{output.audio_format}"
    if "audio" in outputs:
        check_format(audio_path, output.subtype)
    calibration, _ = trace_calibration(trace)
    score = make_score(trace.frames, preset, calibration)
    heap.release()  # what the mapping freed, before the audio's blocks need memory
    result = Rendered(score, trace, sample_rate=rate)
    embed = "page" in outputs and output.page_audio == "embed"
    with OutputSet(overwrite=output.overwrite) as files, contextlib.ExitStack() as open_files:
        sinks: list = []
        if "audio" in outputs:
            sinks.append(open_files.enter_context(AudioFile(files, paths["audio"], rate, output.subtype)))
            result.paths["audio"] = paths["audio"]
        ogg = OggEncoder(rate) if embed else None
        if ogg is not None:
            open_files.callback(ogg.close)
            sinks.append(ogg)
        if sinks:
            result.frames = _render_audio(score, preset, output, rate, sinks, on_progress)
        # After the audio, and one at a time: no output in memory adds to the render's peak.
        for kind in ("midi", "srt", "vtt", "lrc", "json", "plot", "page"):
            if kind in outputs:
                if kind in ("midi", "json"):  # the largest two: written as they are made
                    _write_streamed(kind, files, paths[kind], score, name)
                else:
                    files.write(paths[kind], _made(kind, trace, score, preset, name, ogg, audio_path if not embed else None))
                heap.release()
                result.paths[kind] = paths[kind]
        if "trace" in outputs:
            result.paths["trace"] = trace.write(paths["trace"], outputs=files)
    return result


def _write_streamed(kind: str, files: OutputSet, path: Path, score: Score, name: str) -> None:
    """Write output ``kind`` (midi or json) into its staged file as it is made."""
    if kind == "midi":
        from .outputs.midifile import save_midi

        with files.open(path, "wb") as f:
            save_midi(score, f, title=name)
    else:
        from .outputs.transcript import write_json

        with files.open(path) as f:
            write_json(score, f)


def _made(kind: str, trace: Trace, score: Score, preset: Preset, name: str, ogg, link: Path | None) -> bytes | str:
    """The content of output ``kind`` (not audio, MIDI, JSON or the trace), made in memory."""
    from .outputs import transcript

    if kind == "plot":
        from .outputs.plot import plot_png

        return plot_png(trace.frames, score, title=f"{name} ({preset.name})")
    if kind == "page":
        return _page(trace, score, ogg, link)
    if kind == "lrc":
        return transcript.to_lrc(score, title=name)
    return {"srt": transcript.to_srt, "vtt": transcript.to_vtt}[kind](score)


def _render_audio(score: Score, preset: Preset, output: OutputSettings, rate: int, sinks: list, on_progress) -> int:
    """Render ``score`` into ``sinks`` (our synthesizer block by block, or FluidSynth); returns the frames."""
    if output.soundfont is None:
        from .synth.render import render_to

        return render_to(score, preset.synth, sinks, rate, progress=on_progress)
    from .synth.soundfont import render_soundfont

    audio = render_soundfont(score, output.soundfont, preset.synth, rate)
    for sink in sinks:
        sink.begin()
        sink.write(audio)
        sink.end()
    return audio.shape[0]


def _page(trace: Trace, score: Score, ogg, link: Path | None) -> str:
    """The page's HTML: the audio embedded (``ogg``, an ended OggEncoder), or linked by its
    name when ``link`` is the audio file."""
    from .outputs.page import PageAudio, page_data, page_html, page_info

    audio = PageAudio(link=link.name) if link is not None else PageAudio(ogg=ogg.data)
    return page_html(page_data(trace.frames, score, page_info(trace.header, score)), audio)


def render(
    prompt: str = "",
    *,
    read: str | None = None,
    trace: Trace | str | os.PathLike | None = None,
    preset: str | Preset = "default",
    length: Length | None = None,
    model: ModelSettings | None = None,
    generation: Generation | None = None,
    output: OutputSettings | None = None,
) -> Rendered:
    """Text (or a prompt, or a saved trace) to a finished piece; the Python side of
    ``sonify render``. Returns the Score, the trace and the paths of the files written.

    ``read`` is a text to read; ``trace`` a Trace or a trace file to re-render without
    the model. ``output.outputs`` picks from audio, midi, srt, vtt, lrc, json, trace, plot, page."""
    chosen = preset if isinstance(preset, Preset) else load_preset(preset)
    if sum(x is not None and x != "" for x in (prompt or None, read, trace)) > 1:
        raise SonifyError("give one of a prompt, a text to read, or a trace")
    length = length or Length()
    output = output or OutputSettings()
    prepare_output_folder(output.folder)  # fail before a long model run, not after it
    if trace is not None:
        loaded = cut_trace(trace if isinstance(trace, Trace) else Trace.read(trace), chosen, length)
        default_name = "trace" if isinstance(trace, Trace) else trace_name(trace)
    else:
        loaded = run_model(prompt, text=read, model=model, generation=generation, length=length, preset=chosen)
        default_name = "reading" if read is not None else slug(prompt)
    if not loaded.frames:
        raise SonifyError("the trace holds no tokens; nothing to play")
    return render_files(loaded, chosen, replace(output, name=output.name or default_name))
