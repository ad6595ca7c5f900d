"""The ``sonify`` command line.

Every problem the user can fix ends in one line on stderr (``error: ...``) and exit
status 2; Ctrl-C ends with status 130 and leaves no partial file behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .errors import SonifyError, Terminated

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
        description="Hear a language model think: run a model token by token, record what happens inside, and play it as music.",
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


# command -> (module, function); modules load only when their command runs.
COMMANDS = {
    "trace": ("render", "cmd_trace"),
    "render": ("render", "cmd_render"),
    "score": ("render", "cmd_score"),
    "play": ("live", "cmd_play"),
    "panic": ("live", "cmd_panic"),
    "interlude": ("interlude", "cmd_interlude"),
    "models": (None, "cmd_models"),
    "presets": (None, "cmd_presets"),
    "explain": (None, "cmd_explain"),
}


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    module, function = COMMANDS[name]
    if module is None:
        return globals()[function]
    import importlib

    return getattr(importlib.import_module(f".commands.{module}", __package__), function)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _command(args.command)(args)
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
