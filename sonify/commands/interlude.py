"""`sonify interlude`: a podcast interlude of an exact length, optionally spoken."""

from __future__ import annotations

import argparse
import sys

from ..cli import _read_text
from ..errors import SonifyError
from ..fileio import atomic_write


def cmd_interlude(args: argparse.Namespace) -> int:
    from ..engine import Engine
    from ..interlude import chapters_json, cut_to_fit, frames_within, make_interlude, words_json
    from ..midifile import write_midi
    from ..model import load_model
    from ..pipeline import prepare_output_folder, slug
    from ..preset import load_preset
    from ..sampling import SamplerSettings
    from ..speech import espeak, recording
    from ..synth.render import write_audio
    from ..trace import Trace
    from ..transcript import to_json, to_srt, to_vtt

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
