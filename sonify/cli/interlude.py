"""`sonify interlude`: a podcast interlude of an exact length, optionally spoken."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from ..errors import SonifyError
from . import options
from .common import add_model_args, add_output_args, add_sampler_args, generation, model_settings, read_text


def register(sub: argparse._SubParsersAction) -> None:
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
        "--duration", type=options.SECONDS, required=True, metavar="SECONDS", help="the interlude's exact length (e.g. 10 to 60)"
    )
    inter.add_argument("--lufs", type=options.LUFS, default=-16.0, help="integrated loudness (default: -16; e.g. -14 or -23)")
    inter.add_argument("--fade-in", type=options.FADE, default=1.0, metavar="SECONDS", help="fade-in length (default: 1)")
    inter.add_argument("--fade-out", type=options.FADE, default=3.0, metavar="SECONDS", help="fade-out length (default: 3)")
    voice = inter.add_argument_group("the spoken reading")
    voice.add_argument("--speak", action="store_true", help="read the text aloud with espeak-ng over the music")
    voice.add_argument("--voice", default="en", help="espeak-ng voice (default: en)")
    voice.add_argument("--wpm", type=options.WPM, default=160, help="speaking rate, words a minute (default: 160)")
    voice.add_argument(
        "--voice-file", metavar="WAV", help="a recording of the text to use instead of espeak-ng (with --transcript)"
    )
    voice.add_argument("--transcript", metavar="FILE", help="the text the --voice-file speaks")
    voice.add_argument(
        "--duck", type=options.DUCK, default=9.0, metavar="DB", help="how far the music ducks under the voice (default: 9 dB)"
    )
    add_output_args(inter)
    inter.set_defaults(preset="podcast")
    add_model_args(inter)
    add_sampler_args(inter)
    inter.set_defaults(run=run)


def _paths(folder: Path, name: str, audio_format: str, spoken: bool) -> list[Path]:
    """The files an interlude named ``name`` writes (``spoken``: with the words and chapters)."""
    suffixes = [f".{audio_format}", ".mid", ".srt", ".vtt", ".json", ".trace.jsonl"]
    return [folder / f"{name}{s}" for s in suffixes + ([".words.json", ".chapters.json"] if spoken else [])]


def run(args: argparse.Namespace) -> int:
    from ..interlude.piece import (
        InterludeSettings,
        chapters_json,
        fit_reading,
        frames_within,
        make_interlude,
        reading_length,
        reading_room,
        words_json,
    )
    from ..interlude.speech import espeak, recording
    from ..model.sources import StreamRequest, open_stream
    from ..music.preset import load_preset
    from ..outputs.audio import write_audio
    from ..outputs.files import OutputSet, prepare_output_folder, refuse_existing, slug
    from ..outputs.midifile import score_to_midi
    from ..outputs.trace import Trace
    from ..outputs.transcript import to_json, to_srt, to_vtt
    from ..pipeline import check_size

    if not args.duration > 0:
        raise SonifyError(f"--duration has to be a positive number of seconds, but is {args.duration:g}")
    if args.voice_file and not args.transcript:
        raise SonifyError("--voice-file needs --transcript FILE: the text the recording speaks")
    if args.transcript and not args.voice_file:
        raise SonifyError("--transcript goes with --voice-file WAV")
    sources = sum(bool(x) for x in (args.prompt, args.read, args.transcript))
    if sources > 1:
        raise SonifyError("give one of a prompt, --read FILE or --voice-file with --transcript")
    preset = load_preset(args.preset)
    check_size(args.duration, args.max_duration, "--duration")
    shape = InterludeSettings(args.duration, args.lufs, preset.synth.ceiling, args.fade_in, args.fade_out, args.duck)
    folder = prepare_output_folder(args.out)
    settings = model_settings(args)
    speech = None
    gen = generation(args)
    if args.transcript or args.read:
        text, name = read_text(args.transcript or args.read)
        name = args.name or f"{name}-interlude"
        if not args.force:
            refuse_existing(_paths(folder, name, args.format, spoken=bool(args.speak or args.transcript)))
        speech = recording(args.voice_file, text) if args.transcript else None
        stream = open_stream(settings, StreamRequest(text=text))
    else:
        name = args.name or f"{slug(args.prompt)}-interlude"
        if not args.force:
            refuse_existing(_paths(folder, name, args.format, spoken=bool(args.speak)))
        # Enough text for the time: about 2.5 words (4 tokens) a second when spoken, more for music alone.
        tokens = int(args.duration * (4 if args.speak else 8)) + 16
        stream = open_stream(settings, StreamRequest(args.prompt, max_tokens=tokens, generation=gen, stop_at_eos=False))
    frames = list(stream.frames)
    if not frames:
        raise SonifyError("the model produced no tokens; give a prompt or a text to read")
    if not (args.transcript or args.read):
        text = "".join(f.text for f in frames)
    if args.speak and speech is None:

        def speak(words: str):
            return espeak(words, voice=args.voice, words_per_minute=args.wpm)

        speech = speak(text)
        if reading_length(speech) > reading_room(shape):
            spoken = len(speech.words)
            speech = fit_reading(speech, speak, reading_room(shape))
            if speech is None:
                raise SonifyError(f"not even the first word fits in {args.duration:g} s; give a longer --duration")
            text = speech.text
            frames = frames_within(frames, len(text))
            if args.read:
                print(f"read the first {len(speech.words)} of {spoken} words to fit {args.duration:g} s", file=sys.stderr)
    calibration = None
    if stream.model is not None:
        from ..pipeline import calibration_for

        calibration = calibration_for(stream.model)
    piece = make_interlude(frames, preset, shape, speech=speech, calibration=calibration)
    subtype = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}[args.bits]
    midi = io.BytesIO()
    score_to_midi(piece.score, title=name).save(file=midi)
    made = {".mid": midi.getvalue(), ".srt": to_srt(piece.score), ".vtt": to_vtt(piece.score), ".json": to_json(piece.score)}
    if piece.words:
        made.update({".words.json": words_json(piece.words), ".chapters.json": chapters_json(piece.words, text, name)})
    with OutputSet(overwrite=args.force) as files:
        written = [write_audio(folder / f"{name}.{args.format}", piece.audio, piece.sample_rate, subtype, outputs=files)]
        written += [files.write(folder / f"{name}{suffix}", data) for suffix, data in made.items()]
        written.append(Trace({**stream.header(), "text": text}, list(piece.frames)).write(folder / f"{name}.trace.jsonl", files))
    print(
        f"{args.duration:g} s interlude ({len(piece.frames)} tokens, {preset.name} preset{', spoken' if piece.words else ''}):",
        file=sys.stderr,
    )
    for path in written:
        print(f"  {path}", file=sys.stderr)
    return 0
