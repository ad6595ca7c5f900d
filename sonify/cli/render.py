"""`sonify render` and `sonify score`: a finished piece, from the model or from a saved trace."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from ..errors import SonifyError
from . import options
from .common import (
    DEFAULT_TOKENS_HELP,
    add_model_args,
    add_output_args,
    add_sampler_args,
    generation,
    model_settings,
    output_settings,
    read_text,
)
from .page import add_page_audio_arg
from .progress import render_progress, token_progress


def add_page_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("page")
    g.add_argument("--page", action="store_true", help="also write a page (.html) where the text lights up as it sounds")
    add_page_audio_arg(g)


def register(sub: argparse._SubParsersAction) -> None:
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
    length.add_argument("--tokens", type=options.TOKENS, metavar="N", help=f"tokens to generate (default: {DEFAULT_TOKENS_HELP})")
    length.add_argument("--duration", type=options.SECONDS, metavar="SECONDS", help="generate until the piece lasts this long")
    add_output_args(render)
    add_page_args(render)
    add_model_args(render)
    add_sampler_args(render)
    render.set_defaults(run=run_render)

    score = sub.add_parser(
        "score",
        help="re-render a saved trace with a preset, without the model",
        description="Turn a saved trace into a piece again, e.g. with another preset; the same trace and preset give the same files.",
    )
    score.add_argument("trace", metavar="TRACE", help="a trace file (.trace.jsonl) written by sonify trace or sonify render")
    score.add_argument("--tokens", type=options.TOKENS, metavar="N", help="use only the first N tokens")
    score.add_argument("--duration", type=options.SECONDS, metavar="SECONDS", help="use only as many tokens as this many seconds need")
    add_output_args(score)
    add_page_args(score)
    score.set_defaults(run=run_score)


def _output(args: argparse.Namespace, name: str):
    """The OutputSettings of this render; refuses, before any work, to replace a file without --force."""
    from ..pipeline import check_outputs_free

    output = output_settings(args, name)
    if args.page:
        output = replace(output, outputs=(*output.outputs, "page"), page_audio=args.page_audio)
    check_outputs_free(output)
    return output


def _write_piece(args: argparse.Namespace, trace, preset, name: str) -> int:
    from ..pipeline import render_files

    output = _output(args, name)
    with render_progress(sys.stderr.isatty()) as progress:
        result = render_files(trace, preset, output, on_progress=progress)
    score = result.score
    print(f"{len(trace.frames)} tokens, {score.end:.1f} s, {len(score.notes)} notes ({preset.name} preset):", file=sys.stderr)
    for kind, path in result.paths.items():
        print(f"  {kind:6s} {path}", file=sys.stderr)
    return 0


def _check_size(args: argparse.Namespace, preset, text: str | None, tokens: int | None) -> None:
    """Refuse, before any work, a piece estimated beyond --max-duration (default 3 hours)."""
    from ..pipeline import check_size, estimate_seconds

    if args.duration is not None:  # the piece stops there, whatever the text's length
        check_size(args.duration, args.max_duration, "--duration")
        return
    estimate = estimate_seconds(preset, text=text, tokens=None if text is not None else tokens)
    check_size(estimate, args.max_duration, f"this piece ({preset.name} preset, {preset.timing.words_per_minute:g} words a minute)")


def run_render(args: argparse.Namespace) -> int:
    from ..music.preset import load_preset
    from ..outputs.files import prepare_output_folder, slug
    from ..pipeline import Length, run_model

    if args.prompt and (args.read is not None or args.trace is not None):
        raise SonifyError("give either a prompt, --read FILE or --trace FILE, not two of them")
    length = Length(args.tokens, args.duration)
    preset = load_preset(args.preset)
    prepare_output_folder(args.out)
    if args.trace is not None:
        return _render_trace(args, preset, length)
    text, name = read_text(args.read) if args.read is not None else (None, slug(args.prompt))
    _output(args, name)
    _check_size(args, preset, text, args.tokens if args.tokens is not None else DEFAULT_TOKENS_HELP)
    echo = not args.quiet and sys.stdout.isatty()
    with token_progress(enabled=not echo and sys.stderr.isatty()) as (start, advance):

        def on_frame(frame) -> None:
            advance()
            if echo:
                sys.stdout.write(frame.text)
                sys.stdout.flush()

        trace = run_model(args.prompt, text=text, model=model_settings(args), generation=generation(args), length=length,
                          preset=preset, on_frame=on_frame, on_start=start)  # fmt: skip
    if echo:
        sys.stdout.write("\n")
    if not trace.frames:
        raise SonifyError("the model produced no tokens; give a prompt or a longer --tokens")
    return _write_piece(args, trace, preset, name)


def _render_trace(args: argparse.Namespace, preset, length) -> int:
    from ..outputs.trace import Trace, trace_name
    from ..pipeline import cut_trace

    _output(args, trace_name(args.trace))
    trace = cut_trace(Trace.read(args.trace), preset, length)
    if not trace.frames:
        raise SonifyError(f"{args.trace} holds no tokens; nothing to play")
    _check_size(args, preset, trace.text(), None)
    return _write_piece(args, trace, preset, trace_name(args.trace))


def run_score(args: argparse.Namespace) -> int:
    from ..music.preset import load_preset
    from ..outputs.files import prepare_output_folder
    from ..pipeline import Length

    length = Length(args.tokens, args.duration)
    preset = load_preset(args.preset)
    prepare_output_folder(args.out)
    return _render_trace(args, preset, length)
