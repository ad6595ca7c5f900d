"""Live performance under load: the default model generating while MIDI and audio play.

    python benchmarks/bench_live.py [--seconds 60] [--preset default] [--block 256]

Starts its own JACK server (dummy driver, 48 kHz, 256-frame periods, realtime if allowed),
then performs for the given length with the default model generating token by token in
its own thread, our synth on live audio at the given block size and MIDI to a virtual port
read back by a real MIDI input. Prints xruns per minute, the note-onset error of the MIDI
against the schedule (median, p99, max) and the headroom: the model's time per token
against the time a token lasts. Goals: <= 1 xrun a minute, onsets within one period.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--block", type=int, default=256)
    args = parser.parse_args()

    from jackrig import run_on_jack

    run_on_jack(lambda jack: run(args, jack))


def run(args, jack) -> None:
    from jackrig import match_to_schedule

    from sonify import Engine, SamplerSettings, load_model, load_preset
    from sonify.live.audio import AudioOut
    from sonify.live.midi import MidiOut, midi_module, open_output
    from sonify.live.player import LiveTiming, Player
    from sonify.live.scheduler import Scheduler
    from sonify.music.mapping import make_score

    preset = load_preset(args.preset)
    engine = Engine(load_model())
    voices = make_score(list(engine.generate("", max_tokens=2)), preset).voices
    scheduler = Scheduler()
    midi = MidiOut(open_output(None), scheduler, {v.channel for v in voices})
    mido = midi_module()
    arrived: list = []
    receiver = mido.open_input("sonify:out", callback=lambda m: arrived.append((time.monotonic(), m)))
    audio = AudioOut(preset.synth, preset.music.tempo, voices, block=args.block)
    frames = engine.generate(
        "Shall I compare thee", max_tokens=1_000_000, sampler=SamplerSettings(temperature=0.8), seed=0, stop_at_eos=False
    )
    player = Player(preset, midi=midi, audio=audio, scheduler=scheduler, timing=LiveTiming(latency=0.3, max_seconds=args.seconds))
    started = time.monotonic()
    report = player.play(frames)
    wall = time.monotonic() - started
    time.sleep(0.3)
    receiver.close()
    scheduler.stop()
    midi.close()

    ons = [(t, m) for t, m in arrived if m.type == "note_on" and m.velocity > 0]
    errors = (np.array([t for t, _ in ons]) - np.array(match_to_schedule(ons, report.scheduled))) * 1000
    per_token = np.array(report.model_seconds[1:])
    token_length = np.array(report.token_seconds)
    minutes = wall / 60
    print(
        f"JACK dummy, 48 kHz, period {jack.period} ({jack.period_seconds * 1000:.2f} ms), realtime {jack.realtime}; audio blocks {args.block}"
    )
    print(f"performed {report.tokens} tokens, {len(ons)} MIDI notes, {wall:.1f} s wall ({args.preset} preset)")
    print(
        f"xruns: {report.xruns} ({report.xruns / minutes:.2f} per minute; goal <= 1): {audio.starved} blocks not rendered in time, the rest reported by the audio server"
    )
    print(
        f"MIDI onset error vs schedule, ms: median {np.median(errors):+.2f}, p99 {np.percentile(np.abs(errors), 99):.2f}, max {np.abs(errors).max():.2f} (goal: within {jack.period_seconds * 1000:.2f})"
    )
    print(f"holds: {report.holds} ({report.held_seconds:.2f} s)")
    render = np.array(audio.render_busy) * 1000 / audio.chunk  # a render is of ``chunk`` blocks
    print(
        f"block rendering (in its own thread, {audio.chunk} at a time, {audio.ahead} blocks ahead), a block: median {np.median(render):.2f} ms, p99 {np.percentile(render, 99):.2f}, max {render.max():.2f}"
    )
    busy = np.array(audio.busy) * 1000
    worst = np.argsort(busy)[-3:]
    print(f"slowest callbacks: {[(int(i), round(float(busy[i]), 2)) for i in worst]} of {len(busy)}")
    print(
        f"audio callback: median {np.median(busy):.2f} ms, p99 {np.percentile(busy, 99):.2f}, max {busy.max():.2f} (a block lasts {args.block / audio.sample_rate * 1000:.2f})"
    )
    print(
        f"headroom: the model took {np.median(per_token) * 1000:.2f} ms a token (p99 {np.percentile(per_token, 99) * 1000:.2f}); "
        f"a token lasts {np.median(token_length) * 1000:.0f} ms (shortest {token_length.min() * 1000:.0f}): "
        f"{np.median(token_length) / np.median(per_token):.0f}x"
    )


if __name__ == "__main__":
    main()
