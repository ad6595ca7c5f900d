"""Synthesizer speed: sonify's render of each preset against FluidSynth on the same Score.

    python benchmarks/bench_synth.py [--seconds 60] [--repeats 5] [--presets default,pulse]

For each preset a Score of the given length is made from the default model's trace (the
same 1,200 generated tokens, seed 0, cut where the Score reaches the length). sonify renders
it to a finished mix (notes, effects, the tail until the reverb dies away, loudness
normalisation and the true-peak limiter); FluidSynth renders the same Score written as a
MIDI file, `fluidsynth -ni -q -F out.wav -r 48000 TimGM6mb.sf2 score.mid`, side by side in
the same run. Speed is the Score's length over the time taken; sonify's figure therefore
includes its tail.

On a machine shared with other work the two are measured alike: their runs alternate (ours,
theirs, ours, theirs, ...), so a burst of load from elsewhere falls on both, and each takes
the best of its repeats, the run least disturbed. Both wall time (the goal's measure) and CPU
time (user + system, of every thread; for FluidSynth of the child process) are printed; the
CPU time hardly moves with load, the wall time shows what threads gain. Goals: >= 100x real
time for every preset, and >= 2x FluidSynth's rate, in wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(run: Callable[[], object], cpu: Callable[[], float]) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``run``; ``cpu`` reads the CPU clock that ``run`` advances."""
    cpu0, wall0 = cpu(), time.perf_counter()
    run()
    return time.perf_counter() - wall0, cpu() - cpu0


def interleaved(
    repeats: int, ours: Callable[[], object], theirs: Callable[[], object]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The best (wall, CPU) seconds of each of ``ours`` (this process) and ``theirs`` (a child
    process), their runs alternating; each minimum is taken on its own."""
    mine: list[tuple[float, float]] = []
    other: list[tuple[float, float]] = []
    for _ in range(repeats):
        mine.append(_timed(ours, time.process_time))
        other.append(_timed(theirs, _children_cpu))
    return (min(w for w, _ in mine), min(c for _, c in mine)), (min(w for w, _ in other), min(c for _, c in other))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--presets", default="")
    args = parser.parse_args()

    from sonify import Engine, SamplerSettings, load_model
    from sonify.music.mapping import make_score, shortest_prefix
    from sonify.music.preset import load_preset, preset_names
    from sonify.outputs.midifile import write_midi
    from sonify.synth import render_audio

    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None or not SOUNDFONT.is_file():
        sys.exit("needs fluidsynth and the TimGM6mb soundfont: apt-get install fluidsynth timgm6mb-soundfont")
    engine = Engine(load_model())
    frames = list(
        engine.generate(
            "Shall I compare thee", max_tokens=1200, sampler=SamplerSettings(temperature=0.8), seed=0, stop_at_eos=False
        )
    )
    names = args.presets.split(",") if args.presets else preset_names()
    print(f"load average before: {os.getloadavg()[0]:.2f}; best of {args.repeats}, runs alternating")
    print(
        f"{'preset':10s} {'score s':>8s} {'notes':>6s} {'sonify x RT':>12s} {'fluidsynth x RT':>16s} {'ratio':>6s}"
        f" {'sonify CPU x':>13s} {'fluid CPU x':>12s} {'CPU ratio':>10s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            preset = load_preset(name)
            score = make_score(frames[: shortest_prefix(frames, preset, args.seconds)], preset)
            midi = write_midi(Path(tmp) / f"{name}.mid", score)
            out = Path(tmp) / f"{name}.wav"
            command = [fluidsynth, "-ni", "-q", "-F", str(out), "-r", "48000", str(SOUNDFONT), str(midi)]

            def ours(score=score, preset=preset) -> None:
                render_audio(score, preset.synth)

            def theirs(command=command) -> None:
                subprocess.run(command, check=True, capture_output=True)

            ours()  # warm-up: imports, caches, the page cache for FluidSynth's files
            theirs()
            (wall, cpu), (their_wall, their_cpu) = interleaved(args.repeats, ours, theirs)
            x, their_x = score.end / wall, score.end / their_wall
            cx, their_cx = score.end / cpu, score.end / their_cpu
            print(
                f"{name:10s} {score.end:8.1f} {len(score.notes):6d} {x:12.1f} {their_x:16.1f} {x / their_x:6.2f}"
                f" {cx:13.1f} {their_cx:12.1f} {cx / their_cx:10.2f}"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
