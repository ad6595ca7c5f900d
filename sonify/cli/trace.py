"""`sonify trace`: run the model and write its per-token telemetry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import SonifyError
from . import options
from .common import RENDERS, add_model_args, add_sampler_args, generation, model_settings, read_text
from .progress import token_progress


def register(sub: argparse._SubParsersAction) -> None:
    trace = sub.add_parser(
        "trace",
        help="run the model and write its per-token telemetry (a trace, JSON Lines)",
        description="Generate from a prompt, or read a text, and write one telemetry frame per token.",
    )
    trace.add_argument("prompt", nargs="?", default="", help="text to generate from (default: start from nothing)")
    trace.add_argument("--read", metavar="FILE", help="read this text file instead of generating ('-' for stdin)")
    trace.add_argument("--tokens", type=options.TOKENS, default=200, metavar="N", help="tokens to generate (default: 200)")
    trace.add_argument("--ignore-eos", action="store_true", help="keep generating past the model's end-of-text token")
    trace.add_argument("--alternatives", type=options.ALTERNATIVES, default=5, metavar="K", help="top alternatives kept per token (default: 5)")
    trace.add_argument(
        "--out", type=Path, metavar="PATH", help="trace file, or a folder for <name>.trace.jsonl (default: renders/<name>.trace.jsonl)"
    )
    trace.add_argument("--force", action="store_true", help="replace a trace file of the same name (default: refuse)")
    trace.add_argument("--quiet", action="store_true", help="do not echo the text as it comes")
    add_model_args(trace)
    add_sampler_args(trace)
    trace.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..model.sources import StreamRequest, open_stream
    from ..outputs.files import OutputSet, refuse_existing, slug
    from ..outputs.trace import Trace

    if args.read is not None and args.prompt:
        raise SonifyError("give either a prompt or --read FILE, not both")
    text, name = read_text(args.read) if args.read is not None else (None, slug(args.prompt))
    gen = generation(args)
    out = args.out or RENDERS / f"{name}.trace.jsonl"
    if out.is_dir():
        out = out / f"{name}.trace.jsonl"
    if out.parent != Path("") and not out.parent.exists():
        if args.out is not None:
            raise SonifyError(f"output folder {out.parent} does not exist; create it or choose another --out")
        out.parent.mkdir(parents=True)
    if not args.force:
        refuse_existing([out])
    stream = open_stream(
        model_settings(args, alternatives=args.alternatives), StreamRequest(args.prompt, text, args.tokens, gen, not gen.ignore_eos)
    )
    frames = []
    echo = not args.quiet and sys.stdout.isatty()
    with token_progress(enabled=not echo and sys.stderr.isatty()) as (start, advance):
        start(stream.total)
        for frame in stream.frames:
            frames.append(frame)
            advance()
            if echo:
                sys.stdout.write(frame.text)
                sys.stdout.flush()
    if echo:
        sys.stdout.write("\n")
    with OutputSet(overwrite=args.force) as files:
        Trace(stream.header(), frames).write(out, outputs=files)
    name, backend = stream.describe()
    print(f"wrote {out} ({len(frames)} tokens, model {name}, backend {backend})", file=sys.stderr)
    return 0
