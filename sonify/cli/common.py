"""What the commands share: reading the text, the flag groups, and the settings they build."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from ..errors import SonifyError
from . import options

RENDERS = Path("renders")
VIRTUAL = "<virtual>"
DEFAULT_TOKENS_HELP = 200
API_KEY_VARIABLE = "SONIFY_API_KEY"


def read_text(source: str) -> tuple[str, str]:
    """The text of ``source`` (a path, or ``-`` for stdin) and a short name for outputs."""
    if source == "-":
        if sys.stdin is None or sys.stdin.closed:
            raise SonifyError("standard input is closed; pipe the text in, or give --read FILE")
        try:
            data, name = sys.stdin.buffer.read(), "stdin"
        except (OSError, ValueError) as exc:
            raise SonifyError(f"cannot read standard input ({exc}); pipe the text in, or give --read FILE") from None
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


class _RefuseKeyOnCommandLine(argparse.Action):
    """``--api-key KEY`` would leave the key in the shell's history: refused, with the way to do it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.error(
            f"--api-key is not taken on the command line (it would stay in your shell history); put the key in an "
            f"environment variable and name it with --api-key-env VAR (default: {API_KEY_VARIABLE})"
        )


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        metavar="DIR",
        help="checkpoint folder, HF cache folder or cached hub id (default: the shipped model); with --server, the model name to ask for",
    )
    g.add_argument("--backend", default=None, help="auto | numpy | mlx (default: auto = MLX on Apple Silicon, else NumPy)")
    g.add_argument("--window", type=options.WINDOW, metavar="N", help="context window in tokens (default: the model's, at most 2048)")
    g.add_argument("--threads", type=options.THREADS, metavar="N", help="BLAS threads (default: all cores)")
    s = p.add_argument_group("inference server (instead of running the model here)")
    s.add_argument(
        "--server",
        metavar="URL",
        help="use the model behind this OpenAI-compatible server (vLLM, llama.cpp, mlx_lm.server), e.g. http://127.0.0.1:8080/v1",
    )
    s.add_argument(
        "--api-key-env",
        metavar="VAR",
        help=f"the environment variable holding the server's API key (default: {API_KEY_VARIABLE}, if set)",
    )
    s.add_argument("--api-key", nargs="?", action=_RefuseKeyOnCommandLine, help=argparse.SUPPRESS)


def add_sampler_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling (generation only)")
    g.add_argument("--temp", type=options.TEMPERATURE, default=0.8, help="temperature; 0 = always the most likely token (default: 0.8)")
    g.add_argument("--top-k", type=options.TOP_K, default=0, help="keep the K most likely tokens (default: 0 = off)")
    g.add_argument("--top-p", type=options.TOP_P, default=1.0, help="nucleus sampling mass (default: 1.0 = off)")
    g.add_argument("--min-p", type=options.MIN_P, default=0.0, help="drop tokens below MIN_P x the top probability (default: 0 = off)")
    g.add_argument("--repetition-penalty", type=options.REPETITION_PENALTY, default=1.0, help="penalise recent tokens (default: 1.0 = off)")
    g.add_argument("--seed", type=options.SEED, default=0, help="random seed (default: 0)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("music and output")
    g.add_argument("--preset", default="default", help="preset name or .toml file (default: default; see sonify presets)")
    g.add_argument("--out", type=Path, default=RENDERS, metavar="DIR", help="output folder (default: renders)")
    g.add_argument(
        "--name", type=options.bare_name, metavar="NAME", help="file name for the outputs, without suffix or folder (default: from the prompt or file)"
    )
    g.add_argument("--force", action="store_true", help="replace files of the same name in --out (default: refuse)")
    g.add_argument("--format", choices=("wav", "flac"), default="wav", help="audio file format (default: wav)")
    g.add_argument("--bits", choices=("16", "24", "float"), default="24", help="audio sample format (default: 24)")
    g.add_argument("--rate", type=int, choices=(44100, 48000), help="sample rate in Hz (default: the preset's, 48000)")
    g.add_argument("--soundfont", metavar="SF2", help="play the Score with this SoundFont through FluidSynth instead of our synth")
    g.add_argument("--plot", action="store_true", help="also write a plot (PNG) of the telemetry and the notes")
    g.add_argument("--no-audio", action="store_true", help="write no audio (MIDI, transcripts and trace only)")
    g.add_argument("--quiet", action="store_true", help="do not echo the text as it comes")
    g.add_argument(
        "--max-duration",
        type=options.MAX_DURATION,
        metavar="SECONDS",
        help="refuse, before starting, a piece estimated longer than this (default: 10800 = 3 hours)",
    )


def model_settings(args: argparse.Namespace, alternatives: int = 5):
    """The ModelSettings the model flags name (with ``--server``, the server's)."""
    from ..model.loader import ModelSettings

    if args.server is None:
        if args.api_key_env is not None:
            raise SonifyError("--api-key-env goes with --server URL")
        return ModelSettings(args.model, args.backend or "auto", args.window, args.threads, alternatives)
    local = [
        flag
        for flag, value in (("--backend", args.backend), ("--window", args.window), ("--threads", args.threads))
        if value is not None
    ]
    if local:
        raise SonifyError(f"{local[0]} sets up the model in-process; with --server the server runs the model")
    from ..model.remote import RemoteSettings

    def notify(message: str) -> None:
        print(f"server: {message}", file=sys.stderr, flush=True)

    remote = RemoteSettings(
        args.server, api_key=_api_key(args.api_key_env), model=args.model, alternatives=max(20, alternatives), notify=notify
    )
    return ModelSettings(alternatives=alternatives, server=remote)


def _api_key(variable: str | None) -> str | None:
    """The API key from the environment variable ``variable`` (default: SONIFY_API_KEY, if set)."""
    if variable is None:
        return os.environ.get(API_KEY_VARIABLE) or None
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
        raise SonifyError("--api-key-env takes the NAME of an environment variable (e.g. SONIFY_API_KEY), not the key itself")
    key = os.environ.get(variable)
    if not key:
        raise SonifyError(f"--api-key-env {variable}: that environment variable is not set; export {variable}=... first")
    return key


def generation(args: argparse.Namespace):
    """The Generation (sampler, seed, end-of-text) the sampling flags name."""
    from ..model.sampling import Generation, SamplerSettings

    sampler = SamplerSettings(
        temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty
    )
    return Generation(sampler, args.seed, getattr(args, "ignore_eos", False))


def output_settings(args: argparse.Namespace, name: str):
    """The OutputSettings the output flags name; ``name`` when --name gives none."""
    from ..pipeline import DEFAULT_OUTPUTS, SUBTYPES, OutputSettings

    outputs = [o for o in DEFAULT_OUTPUTS if not (o == "audio" and args.no_audio)]
    outputs += ["plot"] if args.plot else []
    return OutputSettings(
        args.out, args.name or name, tuple(outputs), args.format, SUBTYPES[args.bits], args.rate, args.soundfont, overwrite=args.force
    )
