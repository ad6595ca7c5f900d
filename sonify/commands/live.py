"""`sonify play` and `sonify panic`: live performance."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import VIRTUAL, _read_text
from ..errors import SonifyError, Terminated


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

    from ..engine import Engine
    from ..live.scheduler import Scheduler
    from ..mapping import make_score
    from ..model import load_model
    from ..pipeline import check_length
    from ..preset import load_preset
    from ..sampling import SamplerSettings

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
            from ..live.midi import MidiOut, open_output

            channels = {v.channel for v in voices}
            midi = MidiOut(open_output(None if args.midi_out == VIRTUAL else args.midi_out), scheduler, channels)
        if args.audio:
            from ..live.audio import AudioOut

            audio = AudioOut(preset.synth, preset.music.tempo, voices, block=args.block, device=args.device,
                             record=any(Path(p).suffix.lower() != ".mid" for p in args.record))  # fmt: skip
        if args.osc is not None:
            from ..live.osc import OscOut

            osc = OscOut(args.osc, scheduler)
        if not args.quiet and not args.type and sys.stdout.isatty():
            from ..live.view import TerminalView

            view = TerminalView(f"sonify · {preset.name} · {model.name}")
        from ..live.player import Player

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
            from ..synth.render import write_audio

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
    from ..live.midi import output_names, panic_port

    names = [args.midi_out] if args.midi_out else output_names()
    if not names:
        raise SonifyError("no MIDI output ports on this machine; name one with --midi-out PORT")
    for name in names:
        count = panic_port(name)
        print(f"{name}: {count} messages (all notes off on 16 channels)", file=sys.stderr)
    return 0
