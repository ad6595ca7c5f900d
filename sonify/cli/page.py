"""`sonify page`: the page of a piece already rendered (or of a saved trace)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import SonifyError
from . import options

RENDER_SUFFIXES = (".trace.jsonl", ".jsonl", ".json", ".wav", ".flac", ".mid", ".srt", ".vtt", ".lrc", ".png", ".html")
AUDIO_SUFFIXES = (".wav", ".flac")


def add_page_audio_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--page-audio",
        choices=("embed", "link"),
        default="embed",
        help="embed: the audio inside the page as Ogg Vorbis, about 1 MB a minute (default); link: the page plays the audio file beside it",
    )


def register(sub: argparse._SubParsersAction) -> None:
    page = sub.add_parser(
        "page",
        help="write the page of a rendered piece: the text lights up word by word as the music plays",
        description=(
            "Write one self-contained HTML file for a piece rendered before: the text laid out as written, each word "
            "lit as it sounds, the telemetry and the notes drawn under it. It opens from disk in any current browser, "
            "with no network. Give the trace (NAME.trace.jsonl) or any file of the render (NAME.wav, NAME.json, ...): "
            "the render's own audio is used when it is beside the trace, else the piece is synthesized again."
        ),
    )
    page.add_argument("source", metavar="TRACE_OR_RENDER", help="a trace file, or any file of a render made by sonify render")
    page.add_argument("--preset", help="the preset (default: the one the render used, from NAME.json, else default)")
    page.add_argument("--out", type=Path, metavar="DIR", help="folder for the page (default: beside the source)")
    page.add_argument("--name", type=options.bare_name, metavar="NAME", help="file name of the page, without .html (default: the render's name)")
    page.add_argument("--force", action="store_true", help="replace a page of the same name (default: refuse)")
    add_page_audio_arg(page)
    page.set_defaults(run=run_page)


def render_base(source: str | os.PathLike) -> Path:
    """``renders/the-sea.wav`` (or ``.trace.jsonl``, ``.json``, ...) → ``renders/the-sea``."""
    path = Path(source)
    for suffix in RENDER_SUFFIXES:
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def recorded_preset(transcript: Path) -> str | None:
    """The preset a render used, as its JSON transcript records it."""
    try:
        value = json.loads(transcript.read_text(encoding="utf-8")).get("preset")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def run_page(args: argparse.Namespace) -> int:
    from ..music.mapping import make_score
    from ..music.preset import load_preset
    from ..outputs.files import prepare_output_folder, refuse_existing
    from ..outputs.page import PageAudio, page_info, write_page
    from ..outputs.trace import Trace
    from ..pipeline import trace_calibration

    base = render_base(args.source)
    trace_path = Path(args.source) if str(args.source).endswith(".jsonl") else base.with_name(base.name + ".trace.jsonl")
    if not trace_path.is_file():
        raise SonifyError(f"no trace for {args.source}: {trace_path} does not exist (sonify render writes it beside the audio)")
    trace = Trace.read(trace_path)
    if not trace.frames:
        raise SonifyError(f"{trace_path} holds no tokens; nothing to show")
    recorded = recorded_preset(base.with_name(base.name + ".json"))
    preset = load_preset(args.preset or recorded or "default")
    calibration, _ = trace_calibration(trace)
    score = make_score(trace.frames, preset, calibration)
    folder = prepare_output_folder(args.out or trace_path.parent)
    path = folder / f"{args.name or base.name}.html"
    if not args.force:
        refuse_existing([path])
    audio_file = next((base.with_name(base.name + s) for s in AUDIO_SUFFIXES if base.with_name(base.name + s).is_file()), None)
    if audio_file is not None and args.preset is not None and load_preset(args.preset).name != recorded:
        audio_file = None  # another preset: the render's audio is not this piece
    if args.page_audio == "link":
        if audio_file is None:
            raise SonifyError(
                f"--page-audio link needs the render's audio file ({base.name}.wav or .flac) beside the trace, "
                "made with the same preset; render it, or embed the audio"
            )
        audio = PageAudio(link=Path(os.path.relpath(audio_file.resolve(), folder.resolve())).as_posix())
    elif audio_file is not None:
        audio = _read_audio(audio_file, score.end)
    else:
        from ..outputs.ogg import OggEncoder
        from ..synth.render import render_to

        print(f"synthesizing the audio ({preset.name} preset) ...", file=sys.stderr)
        encoder = OggEncoder(preset.synth.sample_rate)
        render_to(score, preset.synth, [encoder])
        audio = PageAudio(ogg=encoder.data)
    write_page(path, trace.frames, score, page_info(trace.header, score), audio, overwrite=args.force)
    source = f"linking {audio.link}" if audio.link else ("audio from " + str(audio_file) if audio_file else "audio synthesized")
    print(f"{len(trace.frames)} tokens, {score.end:.1f} s ({preset.name} preset, {source}):", file=sys.stderr)
    print(f"  page   {path}", file=sys.stderr)
    return 0


def _read_audio(path: Path, piece_end: float):
    """The page's audio from the render's file, read and encoded block by block."""
    import soundfile

    from ..outputs.ogg import OggEncoder
    from ..outputs.page import PageAudio

    try:
        with soundfile.SoundFile(path) as f:
            frames, rate = f.frames, f.samplerate
            if frames < piece_end * rate - rate * 0.05:
                raise SonifyError(
                    f"{path} lasts {frames / rate:.1f} s but the piece lasts {piece_end:.1f} s: it was rendered with another "
                    "preset or trace; give that --preset, or delete the audio to synthesize it again"
                )
            encoder = OggEncoder(rate, f.channels)
            encoder.begin()
            for block in f.blocks(262144, dtype="float32", always_2d=True):
                encoder.write(block)
            encoder.end()
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise SonifyError(f"cannot read the audio {path}: {exc}") from None
    return PageAudio(ogg=encoder.data)
