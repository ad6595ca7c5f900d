"""`sonify trace`, `sonify render` and `sonify score`: a model run, and the files a piece leaves."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from ..cli import RENDERS, _read_text
from ..errors import SonifyError


def cmd_trace(args: argparse.Namespace) -> int:
    from ..engine import Engine
    from ..model import load_model
    from ..sampling import SamplerSettings
    from ..trace import Trace

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
    with _token_progress(enabled=not echo and sys.stderr.isatty()) as (start, advance):
        start(total)
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
    from ..pipeline import DEFAULT_OUTPUTS

    outputs = [o for o in DEFAULT_OUTPUTS if not (o == "audio" and args.no_audio)]
    return outputs + ["plot"] if args.plot else outputs


def _write_piece(args: argparse.Namespace, trace, preset, name: str) -> int:
    from ..pipeline import render_files

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
    from ..pipeline import check_length, prepare_output_folder, run_model, slug
    from ..preset import load_preset
    from ..sampling import SamplerSettings

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
    from ..pipeline import cut_trace, trace_name
    from ..trace import Trace

    trace = cut_trace(Trace.read(args.trace), preset, args.tokens, args.duration)
    if not trace.frames:
        raise SonifyError(f"{args.trace} holds no tokens; nothing to play")
    return _write_piece(args, trace, preset, trace_name(args.trace))


def cmd_score(args: argparse.Namespace) -> int:
    from ..pipeline import check_length, prepare_output_folder
    from ..preset import load_preset

    check_length(args.tokens, args.duration)
    preset = load_preset(args.preset)
    prepare_output_folder(args.out)
    return _render_trace(args, preset)


@contextlib.contextmanager
def _token_progress(enabled: bool) -> Iterator[tuple[Callable[[int | None], None], Callable[[], None]]]:
    """A token progress bar on stderr (transient), or no-ops when it is not a terminal.

    Yields ``start(total)``, called once the total is known (None: unknown), and ``advance()``."""
    if not enabled:
        yield (lambda total: None), (lambda: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("tokens"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("tokens", total=None)
        yield (lambda total: progress.update(task, total=total)), (lambda: progress.advance(task))
