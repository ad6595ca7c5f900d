"""The ``sonify`` command line.

Every problem the user can fix ends in one line on stderr (``error: ...``) and exit
status 2; Ctrl-C ends with status 130 and leaves no partial file behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from . import __version__
from .errors import SonifyError
from .fileio import atomic_write

RENDERS = Path("renders")


def _read_text(source: str) -> tuple[str, str]:
    """The text of ``source`` (a path, or ``-`` for stdin) and a short name for outputs."""
    if source == "-":
        data, name = sys.stdin.buffer.read(), "stdin"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SonifyError(f"text file {path} does not exist") from None
        except IsADirectoryError:
            raise SonifyError(f"{path} is a folder; --read takes a text file") from None
        except OSError as exc:
            raise SonifyError(f"cannot read {path}: {exc.strerror}") from None
        name = path.stem
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SonifyError(
            f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"convert it, e.g. iconv -f LATIN1 -t UTF-8 {source}"
        ) from None
    if not text.strip():
        raise SonifyError(f"{source} holds no text to read")
    return text, name


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model", metavar="DIR", help="checkpoint folder, HF cache folder or cached hub id (default: the shipped model)"
    )
    g.add_argument("--backend", default="auto", help="auto | numpy | mlx (default: auto = MLX on Apple Silicon, else NumPy)")
    g.add_argument("--window", type=int, metavar="N", help="context window in tokens (default: the model's, at most 2048)")
    g.add_argument("--threads", type=int, metavar="N", help="BLAS threads (default: all cores)")


def _add_sampler_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling (generation only)")
    g.add_argument("--temp", type=float, default=0.8, help="temperature; 0 = always the most likely token (default: 0.8)")
    g.add_argument("--top-k", type=int, default=0, help="keep the K most likely tokens (default: 0 = off)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default: 1.0 = off)")
    g.add_argument("--min-p", type=float, default=0.0, help="drop tokens below MIN_P x the top probability (default: 0 = off)")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="penalise recent tokens (default: 1.0 = off)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


DEFAULT_TOKENS_HELP = 200
VIRTUAL = "<virtual>"


def _add_output_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("music and output")
    g.add_argument("--preset", default="default", help="preset name or .toml file (default: default; see sonify presets)")
    g.add_argument("--out", type=Path, default=RENDERS, metavar="DIR", help="output folder (default: renders)")
    g.add_argument("--name", metavar="NAME", help="file name for the outputs, without suffix (default: from the prompt or file)")
    g.add_argument("--format", choices=("wav", "flac"), default="wav", help="audio file format (default: wav)")
    g.add_argument("--bits", choices=("16", "24", "float"), default="24", help="audio sample format (default: 24)")
    g.add_argument("--rate", type=int, choices=(44100, 48000), help="sample rate in Hz (default: the preset's, 48000)")
    g.add_argument("--soundfont", metavar="SF2", help="play the Score with this SoundFont through FluidSynth instead of our synth")
    g.add_argument("--plot", action="store_true", help="also write a plot (PNG) of the telemetry and the notes")
    g.add_argument("--no-audio", action="store_true", help="write no audio (MIDI, transcripts and trace only)")
    g.add_argument("--quiet", action="store_true", help="do not echo the text as it comes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sonify",
        description="Hear a language model think: run a model token by token and record what happens inside.",
    )
    parser.add_argument("--version", action="version", version=f"sonify {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    trace = sub.add_parser(
        "trace",
        help="run the model and write its per-token telemetry (a trace, JSON Lines)",
        description="Generate from a prompt, or read a text, and write one telemetry frame per token.",
    )
    trace.add_argument("prompt", nargs="?", default="", help="text to generate from (default: start from nothing)")
    trace.add_argument("--read", metavar="FILE", help="read this text file instead of generating ('-' for stdin)")
    trace.add_argument("--tokens", type=int, default=200, metavar="N", help="tokens to generate (default: 200)")
    trace.add_argument("--ignore-eos", action="store_true", help="keep generating past the model's end-of-text token")
    trace.add_argument("--alternatives", type=int, default=5, metavar="K", help="top alternatives kept per token (default: 5)")
    trace.add_argument("--out", type=Path, metavar="PATH", help="trace file (default: renders/<name>.trace.jsonl)")
    trace.add_argument("--quiet", action="store_true", help="do not echo the text as it comes")
    _add_model_args(trace)
    _add_sampler_args(trace)

    render = sub.add_parser(
        "render",
        help="make a finished piece: audio, MIDI, transcripts and the trace",
        description=(
            "Generate from a prompt (or read a text, or replay a saved trace), turn it into music with a preset, "
            "and write the audio (WAV/FLAC), the MIDI file, the transcripts (SRT, WebVTT, LRC, JSON), the trace "
            "and, with --plot, a plot. Files go to renders/ unless --out says otherwise."
        ),
    )
    render.add_argument("prompt", nargs="?", default="", help="text to generate from (default: start from nothing)")
    source = render.add_mutually_exclusive_group()
    source.add_argument("--read", metavar="FILE", help="read this text file instead of generating ('-' for stdin)")
    source.add_argument("--trace", metavar="FILE", help="re-render a saved trace (no model needed)")
    length = render.add_argument_group("length (one of)")
    length.add_argument("--tokens", type=int, metavar="N", help=f"tokens to generate (default: {DEFAULT_TOKENS_HELP})")
    length.add_argument("--duration", type=float, metavar="SECONDS", help="generate until the piece lasts this long")
    _add_output_args(render)
    _add_model_args(render)
    _add_sampler_args(render)

    score = sub.add_parser(
        "score",
        help="re-render a saved trace with a preset, without the model",
        description="Turn a saved trace into a piece again, e.g. with another preset; the same trace and preset give the same files.",
    )
    score.add_argument("trace", metavar="TRACE", help="a trace file (.trace.jsonl) written by sonify trace or sonify render")
    score.add_argument("--tokens", type=int, metavar="N", help="use only the first N tokens")
    score.add_argument("--duration", type=float, metavar="SECONDS", help="use only as many tokens as this many seconds need")
    _add_output_args(score)

    play = sub.add_parser(
        "play",
        help="perform live: MIDI out to your DAW and synths, live audio, the text on screen as it sounds",
        description=(
            "Run the model (or read a text, or what you type) and play it in real time, a fixed latency ahead: "
            "MIDI to a port (or a virtual port named sonify), our synth to the audio output, telemetry as OSC. "
            "Ctrl-C stops and silences every note."
        ),
    )
    play.add_argument("prompt", nargs="?", default="", help="text to generate from (default: start from nothing)")
    play_source = play.add_mutually_exclusive_group()
    play_source.add_argument("--read", metavar="FILE", help="read this text file ('-' for stdin)")
    play_source.add_argument("--type", action="store_true", help="read what you type, line by line")
    play_length = play.add_argument_group("length (one of; default: until the model stops or Ctrl-C)")
    play_length.add_argument("--tokens", type=int, metavar="N", help="tokens to generate")
    play_length.add_argument("--duration", type=float, metavar="SECONDS", help="play for this long")
    outs = play.add_argument_group("outputs (at least one)")
    outs.add_argument(
        "--midi-out",
        nargs="?",
        const=VIRTUAL,
        metavar="PORT",
        help="send MIDI to PORT, or to a virtual port 'sonify' if none is named",
    )
    outs.add_argument("--audio", action="store_true", help="play our synth on the audio output")
    outs.add_argument("--osc", metavar="HOST:PORT", help="send per-token telemetry as OSC to HOST:PORT")
    timing = play.add_argument_group("timing")
    timing.add_argument(
        "--latency", type=float, default=0.3, metavar="SECONDS", help="how far ahead events are scheduled (default: 0.3)"
    )
    timing.add_argument("--block", type=int, default=256, metavar="FRAMES", help="audio block size (default: 256)")
    timing.add_argument("--device", metavar="NAME", help="audio output device (default: the system's)")
    timing.add_argument("--no-clock", action="store_true", help="send no MIDI clock")
    play.add_argument("--preset", default="default", help="preset name or .toml file (default: default)")
    play.add_argument(
        "--record",
        action="append",
        default=[],
        metavar="FILE",
        help="also write what was played: .wav/.flac (audio) or .mid (MIDI); repeatable",
    )
    play.add_argument("--quiet", action="store_true", help="no terminal view")
    _add_model_args(play)
    _add_sampler_args(play)

    panic = sub.add_parser(
        "panic",
        help="silence a MIDI port: all notes off on all 16 channels",
        description="Send note-off for every note, All Notes Off and All Sound Off on every channel.",
    )
    panic.add_argument("--midi-out", metavar="PORT", help="the port (default: every MIDI output on this machine)")

    inter = sub.add_parser(
        "interlude",
        help="a finished podcast interlude of an exact length, optionally with the text spoken over it",
        description=(
            "Make a piece of exactly --duration seconds at 48 kHz: fade-in, a musical ending (the last phrase resolves, "
            "then the tail fades), loudness normalised (-16 LUFS by default), true peak under -1 dBTP. With --speak the "
            "text is read aloud by espeak-ng (or bring a recording with --voice-file and --transcript); the music follows "
            "the reading and ducks under the voice."
        ),
    )
    inter.add_argument("prompt", nargs="?", default="", help="text to generate from (default: start from nothing)")
    inter.add_argument("--read", metavar="FILE", help="the text to read ('-' for stdin)")
    inter.add_argument(
        "--duration", type=float, required=True, metavar="SECONDS", help="the interlude's exact length (e.g. 10 to 60)"
    )
    inter.add_argument("--lufs", type=float, default=-16.0, help="integrated loudness (default: -16; e.g. -14 or -23)")
    inter.add_argument("--fade-in", type=float, default=1.0, metavar="SECONDS", help="fade-in length (default: 1)")
    inter.add_argument("--fade-out", type=float, default=3.0, metavar="SECONDS", help="fade-out length (default: 3)")
    voice = inter.add_argument_group("the spoken reading")
    voice.add_argument("--speak", action="store_true", help="read the text aloud with espeak-ng over the music")
    voice.add_argument("--voice", default="en", help="espeak-ng voice (default: en)")
    voice.add_argument("--wpm", type=int, default=160, help="speaking rate, words a minute (default: 160)")
    voice.add_argument(
        "--voice-file", metavar="WAV", help="a recording of the text to use instead of espeak-ng (with --transcript)"
    )
    voice.add_argument("--transcript", metavar="FILE", help="the text the --voice-file speaks")
    voice.add_argument(
        "--duck", type=float, default=9.0, metavar="DB", help="how far the music ducks under the voice (default: 9 dB)"
    )
    _add_output_args(inter)
    inter.set_defaults(preset="podcast")
    _add_model_args(inter)
    _add_sampler_args(inter)

    sub.add_parser("presets", help="list the presets with one line each", description="List the presets in the presets folder.")
    explain = sub.add_parser(
        "explain",
        help="say which signal drives which musical parameter in a preset",
        description="Print a preset's legend: what each voice plays and which telemetry drives it.",
    )
    explain.add_argument("preset", nargs="?", default="default", help="preset name or .toml path (default: default)")

    sub.add_parser(
        "models", help="list the models found on this machine", description="List the shipped model and the local HF cache."
    )
    return parser


@contextlib.contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr (transient), or a no-op when stderr is not a terminal."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("tokens"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("tokens", total=total)
        yield lambda: progress.advance(task)


def cmd_trace(args: argparse.Namespace) -> int:
    from .engine import Engine
    from .model import load_model
    from .sampling import SamplerSettings
    from .trace import Trace

    if args.read is not None and args.prompt:
        raise SonifyError("give either a prompt or --read FILE, not both")
    if args.tokens < 1:
        raise SonifyError(f"--tokens has to be at least 1, but is {args.tokens}")
    text, name = _read_text(args.read) if args.read is not None else (None, "generated")
    sampler = SamplerSettings(
        temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty
    )
    out = args.out or RENDERS / f"{name}.trace.jsonl"
    if out.parent != Path("") and not out.parent.exists():
        if args.out is not None:
            raise SonifyError(f"output folder {out.parent} does not exist; create it or choose another --out")
        out.parent.mkdir(parents=True)
    model = load_model(args.model, backend=args.backend, window=args.window, threads=args.threads)
    engine = Engine(model, alternatives=args.alternatives)
    # Tokenized once here: the ids give the progress bar its length and feed the engine.
    if text is not None:
        header = engine.header("read", text=text)
        ids = model.tokenizer.encode(text)
        frames, total = engine.read_ids(ids), len(ids)
    else:
        header = engine.header("generate", prompt=args.prompt, sampler=sampler.to_dict(), seed=args.seed, max_tokens=args.tokens)
        ids = model.tokenizer.encode(args.prompt) if args.prompt else []
        frames = engine.generate(ids, max_tokens=args.tokens, sampler=sampler, seed=args.seed, stop_at_eos=not args.ignore_eos)
        total = len(ids) + args.tokens
    trace = Trace(header)
    echo = not args.quiet and sys.stdout.isatty()
    with _progress(total, enabled=not echo and sys.stderr.isatty()) as advance:
        for frame in frames:
            trace.frames.append(frame)
            advance()
            if echo:
                sys.stdout.write(frame.text)
                sys.stdout.flush()
    if echo:
        sys.stdout.write("\n")
    trace.write(out)
    print(f"wrote {out} ({len(trace.frames)} tokens, model {model.name}, backend {model.backend})", file=sys.stderr)
    return 0


def _outputs(args: argparse.Namespace) -> list[str]:
    from .pipeline import DEFAULT_OUTPUTS

    outputs = [o for o in DEFAULT_OUTPUTS if not (o == "audio" and args.no_audio)]
    return outputs + ["plot"] if args.plot else outputs


def _write_piece(args: argparse.Namespace, trace, preset, name: str) -> int:
    from .pipeline import render_files

    subtype = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}[args.bits]
    with _render_progress(sys.stderr.isatty()) as progress:
        result = render_files(
            trace, preset, out=args.out, name=args.name or name, outputs=_outputs(args), audio_format=args.format,
            subtype=subtype, sample_rate=args.rate, soundfont=args.soundfont, on_progress=progress,
        )  # fmt: skip
    score = result.score
    print(
        f"{len(trace.frames)} tokens, {score.end:.1f} s, {len(score.notes)} notes ({preset.name} preset):",
        file=sys.stderr,
    )
    for kind, path in result.paths.items():
        print(f"  {kind:6s} {path}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _render_progress(enabled: bool) -> Iterator[Callable[[float], None]]:
    if not enabled:
        yield lambda fraction: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("rendering"), BarColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("rendering", total=1.0)
        yield lambda fraction: bar.update(task, completed=fraction)


def cmd_render(args: argparse.Namespace) -> int:
    from .pipeline import check_length, prepare_output_folder, run_model, slug
    from .preset import load_preset
    from .sampling import SamplerSettings

    if args.prompt and (args.read is not None or args.trace is not None):
        raise SonifyError("give either a prompt, --read FILE or --trace FILE, not two of them")
    check_length(args.tokens, args.duration)
    preset = load_preset(args.preset)
    prepare_output_folder(args.out)
    if args.trace is not None:
        return _render_trace(args, preset)
    text, name = _read_text(args.read) if args.read is not None else (None, slug(args.prompt))
    sampler = SamplerSettings(
        temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty
    )
    echo = not args.quiet and sys.stdout.isatty()
    bar_total: list[int | None] = [None]
    with _token_progress(enabled=not echo and sys.stderr.isatty()) as (start, advance):

        def on_frame(frame) -> None:
            advance()
            if echo:
                sys.stdout.write(frame.text)
                sys.stdout.flush()

        trace = run_model(
            prompt=args.prompt, text=text, model=args.model, backend=args.backend, window=args.window, threads=args.threads,
            sampler=sampler, seed=args.seed, tokens=args.tokens, duration=args.duration, preset=preset, on_frame=on_frame,
            on_start=lambda total: (bar_total.__setitem__(0, total), start(total)),
        )  # fmt: skip
    if echo:
        sys.stdout.write("\n")
    if not trace.frames:
        raise SonifyError("the model produced no tokens; give a prompt or a longer --tokens")
    return _write_piece(args, trace, preset, name)


def _render_trace(args: argparse.Namespace, preset) -> int:
    from .pipeline import shortest_prefix
    from .trace import Trace

    trace = Trace.read(args.trace)
    if args.duration is not None:
        trace = Trace(trace.header, trace.frames[: shortest_prefix(trace.frames, preset, args.duration)])
    elif args.tokens is not None:
        trace = Trace(trace.header, trace.frames[: args.tokens])
    if not trace.frames:
        raise SonifyError(f"{args.trace} holds no tokens; nothing to play")
    name = Path(args.trace).name.removesuffix(".jsonl").removesuffix(".trace")
    return _write_piece(args, trace, preset, name)


def cmd_score(args: argparse.Namespace) -> int:
    from .pipeline import check_length, prepare_output_folder
    from .preset import load_preset

    check_length(args.tokens, args.duration)
    preset = load_preset(args.preset)
    prepare_output_folder(args.out)
    return _render_trace(args, preset)


@contextlib.contextmanager
def _token_progress(enabled: bool) -> Iterator[tuple[Callable[[int | None], None], Callable[[], None]]]:
    """A token progress bar whose total is known only when the model starts (None: unknown)."""
    if not enabled:
        yield (lambda total: None), (lambda: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("tokens"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("tokens", total=None)
        yield (lambda total: progress.update(task, total=total)), (lambda: progress.advance(task))


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so every exit path silences the outputs."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated


def _frames_for_play(args: argparse.Namespace, engine, sampler):
    if args.type:
        reader = engine.reader()

        def typed():
            for line in sys.stdin:
                yield from reader.feed(line)

        return typed()
    if args.read is not None:
        text, _ = _read_text(args.read)
        ids = engine.model.tokenizer.encode(text)
        return engine.read_ids(ids[: args.tokens] if args.tokens else ids)
    limit = args.tokens if args.tokens is not None else 1_000_000
    return engine.generate(args.prompt, max_tokens=limit, sampler=sampler, seed=args.seed, stop_at_eos=args.duration is None)


def cmd_play(args: argparse.Namespace) -> int:
    import signal

    from .engine import Engine
    from .live.scheduler import Scheduler
    from .mapping import make_score
    from .model import load_model
    from .pipeline import check_length
    from .preset import load_preset
    from .sampling import SamplerSettings

    if args.prompt and (args.read is not None or args.type):
        raise SonifyError("give either a prompt, --read FILE or --type, not two of them")
    check_length(args.tokens, args.duration)
    if args.midi_out is None and not args.audio and args.osc is None:
        raise SonifyError("choose an output: --midi-out [PORT], --audio and/or --osc HOST:PORT")
    for path in args.record:
        suffix = Path(path).suffix.lower()
        if suffix not in (".wav", ".flac", ".mid"):
            raise SonifyError(f"--record {path}: write .wav, .flac (audio) or .mid (MIDI)")
        if suffix == ".mid" and args.midi_out is None:
            raise SonifyError("--record FILE.mid records the MIDI output; add --midi-out")
        if suffix != ".mid" and not args.audio:
            raise SonifyError(f"--record {path} records the audio output; add --audio")
        if not Path(path).parent.is_dir():
            raise SonifyError(f"--record {path}: folder {Path(path).parent} does not exist")
    preset = load_preset(args.preset)
    sampler = SamplerSettings(
        temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty
    )
    model = load_model(args.model, backend=args.backend, window=args.window, threads=args.threads)
    engine = Engine(model)
    voices = make_score(list(engine.generate("", max_tokens=1)), preset).voices
    scheduler = Scheduler()
    midi = audio = osc = view = None
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if args.midi_out is not None:
            from .live.midi import MidiOut, open_output

            channels = {v.channel for v in voices}
            midi = MidiOut(open_output(None if args.midi_out == VIRTUAL else args.midi_out), scheduler, channels)
        if args.audio:
            from .live.audio import AudioOut

            audio = AudioOut(preset.synth, preset.music.tempo, voices, block=args.block, device=args.device,
                             record=any(Path(p).suffix.lower() != ".mid" for p in args.record))  # fmt: skip
        if args.osc is not None:
            from .live.osc import OscOut

            osc = OscOut(args.osc, scheduler)
        if not args.quiet and not args.type and sys.stdout.isatty():
            from .live.view import TerminalView

            view = TerminalView(f"sonify · {preset.name} · {model.name}")
        from .live.player import Player

        player = Player(preset, midi=midi, audio=audio, osc=osc, view=view, scheduler=scheduler, latency=args.latency,
                        clock=not args.no_clock, max_seconds=args.duration)  # fmt: skip
        report = player.play(_frames_for_play(args, engine, sampler))
    finally:
        signal.signal(signal.SIGTERM, previous)
        scheduler.stop()
        if midi is not None:
            midi.close()
    for path in args.record:
        if Path(path).suffix.lower() == ".mid":
            midi.write(path, report.start, preset.music.tempo)
        else:
            from .synth.render import write_audio

            write_audio(path, audio.recording(), audio.sample_rate)
        print(f"recorded {path}", file=sys.stderr)
    budget = sum(report.token_seconds)
    model_time = sum(report.model_seconds)
    print(
        f"played {report.tokens} tokens; {report.holds} holds ({report.held_seconds:.2f} s), {report.xruns} xruns; "
        f"the model needed {model_time:.1f} s for {budget:.1f} s of music",
        file=sys.stderr,
    )
    if report.interrupted is not None:
        print("stopped; all notes off", file=sys.stderr)
        return 143 if isinstance(report.interrupted, Terminated) else 130
    return 0


def cmd_panic(args: argparse.Namespace) -> int:
    from .live.midi import output_names, panic_port

    names = [args.midi_out] if args.midi_out else output_names()
    if not names:
        raise SonifyError("no MIDI output ports on this machine; name one with --midi-out PORT")
    for name in names:
        count = panic_port(name)
        print(f"{name}: {count} messages (all notes off on 16 channels)", file=sys.stderr)
    return 0


def cmd_interlude(args: argparse.Namespace) -> int:
    from .engine import Engine
    from .interlude import chapters_json, cut_to_fit, frames_within, make_interlude, words_json
    from .midifile import write_midi
    from .model import load_model
    from .pipeline import prepare_output_folder, slug
    from .preset import load_preset
    from .sampling import SamplerSettings
    from .speech import espeak, recording
    from .synth.render import write_audio
    from .trace import Trace
    from .transcript import to_json, to_srt, to_vtt

    if not args.duration > 0:
        raise SonifyError(f"--duration has to be a positive number of seconds, but is {args.duration:g}")
    if args.voice_file and not args.transcript:
        raise SonifyError("--voice-file needs --transcript FILE: the text the recording speaks")
    if args.transcript and not args.voice_file:
        raise SonifyError("--transcript goes with --voice-file WAV")
    sources = sum(bool(x) for x in (args.prompt, args.read, args.transcript))
    if sources > 1:
        raise SonifyError("give one of a prompt, --read FILE or --voice-file with --transcript")
    if not -40 <= args.lufs <= -6:
        raise SonifyError(f"--lufs {args.lufs:g} is outside -40..-6 LUFS")
    preset = load_preset(args.preset)
    folder = prepare_output_folder(args.out)
    available = args.duration - args.fade_out - 0.5
    model = load_model(args.model, backend=args.backend, window=args.window, threads=args.threads)
    engine = Engine(model)
    speech = None
    if args.transcript:
        text, name = _read_text(args.transcript)
        frames = list(engine.read(text))
        speech = recording(args.voice_file, text)
    elif args.read:
        text, name = _read_text(args.read)
        frames = list(engine.read(text))
    else:
        name = slug(args.prompt)
        sampler = SamplerSettings(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                                  repetition_penalty=args.repetition_penalty)  # fmt: skip
        # Enough text for the time: about 2.5 words (4 tokens) a second when spoken, more for music alone.
        tokens = int(args.duration * (4 if args.speak else 8)) + 16
        frames = list(engine.generate(args.prompt, max_tokens=tokens, sampler=sampler, seed=args.seed, stop_at_eos=False))
        text = "".join(f.text for f in frames)
    if args.speak and speech is None:
        speech = espeak(text, voice=args.voice, words_per_minute=args.wpm)
        room = available - args.fade_in - 0.5
        if speech.duration > room:
            keep = cut_to_fit(frames, speech, room)
            if keep == 0:
                raise SonifyError(f"not even the first word fits in {args.duration:g} s; give a longer --duration")
            spoken = len(speech.words)
            text = text[:keep]
            frames = frames_within(frames, keep)
            speech = espeak(text, voice=args.voice, words_per_minute=args.wpm)
            if args.read:
                print(f"read the first {len(speech.words)} of {spoken} words to fit {args.duration:g} s", file=sys.stderr)
    piece = make_interlude(frames, preset, args.duration, speech=speech, loudness=args.lufs, ceiling=preset.synth.ceiling,
                           fade_in=args.fade_in, fade_out=args.fade_out, duck_db=args.duck)  # fmt: skip
    name = args.name or f"{name}-interlude"
    subtype = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}[args.bits]
    written = [write_audio(folder / f"{name}.{args.format}", piece.audio, piece.sample_rate, subtype)]
    written.append(write_midi(folder / f"{name}.mid", piece.score, title=name))
    for suffix, data in ((".srt", to_srt(piece.score)), (".vtt", to_vtt(piece.score)), (".json", to_json(piece.score))):
        with atomic_write(folder / f"{name}{suffix}") as f:
            f.write(data)
        written.append(folder / f"{name}{suffix}")
    if piece.words:
        for suffix, data in ((".words.json", words_json(piece.words)), (".chapters.json", chapters_json(piece.words, text, name))):
            with atomic_write(folder / f"{name}{suffix}") as f:
                f.write(data)
            written.append(folder / f"{name}{suffix}")
    written.append(
        Trace(engine.header("read" if args.read or args.transcript else "generate", text=text), list(piece.frames)).write(
            folder / f"{name}.trace.jsonl"
        )
    )
    print(
        f"{args.duration:g} s interlude ({len(piece.frames)} tokens, {preset.name} preset{', spoken' if piece.words else ''}):",
        file=sys.stderr,
    )
    for path in written:
        print(f"  {path}", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .checkpoint import list_local_models

    for name, folder in list_local_models():
        print(f"{name:40s} {folder}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .preset import load_preset, preset_names

    names = preset_names()
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:{width}s}  {load_preset(name).description}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain
    from .preset import load_preset

    print(explain(load_preset(args.preset)))
    return 0


COMMANDS = {
    "trace": cmd_trace,
    "render": cmd_render,
    "score": cmd_score,
    "play": cmd_play,
    "interlude": cmd_interlude,
    "panic": cmd_panic,
    "models": cmd_models,
    "presets": cmd_presets,
    "explain": cmd_explain,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except SonifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated; all notes off, nothing was written", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug, not bad input: one line, the traceback on request
        if os.environ.get("SONIFY_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set SONIFY_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
