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


COMMANDS = {"trace": cmd_trace, "models": cmd_models, "presets": cmd_presets, "explain": cmd_explain}


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
