"""Synthesizer speed: sonify's render of each preset against FluidSynth on the same Score.

    python benchmarks/bench_synth.py [--seconds 60] [--repeats 3] [--presets default,pulse]

For each preset a Score of the given length is made from the default model's trace (the
same 1,200 generated tokens, seed 0, cut where the Score reaches the length). sonify renders
it to a finished mix (notes, effects, the tail until the reverb dies away, loudness
normalisation and the true-peak limiter); FluidSynth renders the same Score written as a
MIDI file, `fluidsynth -ni -q -F out.wav -r 48000 TimGM6mb.sf2 score.mid`, side by side in
the same run. Speed is the Score's length over the wall time (best of the repeats); sonify's
figure therefore includes its tail. Goals: >= 100x real time for the default preset, and
>= 2x FluidSynth's rate.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
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
    print(f"{'preset':10s} {'score s':>8s} {'notes':>6s} {'sonify x RT':>12s} {'fluidsynth x RT':>16s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            preset = load_preset(name)
            score = make_score(frames[: shortest_prefix(frames, preset, args.seconds)], preset)
            render_audio(score, preset.synth)  # warm-up: imports, caches
            ours = best_of(args.repeats, lambda score=score, preset=preset: render_audio(score, preset.synth))
            midi = write_midi(Path(tmp) / f"{name}.mid", score)
            out = Path(tmp) / f"{name}.wav"
            command = [fluidsynth, "-ni", "-q", "-F", str(out), "-r", "48000", str(SOUNDFONT), str(midi)]
            theirs = best_of(args.repeats, lambda command=command: subprocess.run(command, check=True, capture_output=True))
            ours_x, theirs_x = score.end / ours, score.end / theirs
            print(f"{name:10s} {score.end:8.1f} {len(score.notes):6d} {ours_x:12.1f} {theirs_x:16.1f} {ours_x / theirs_x:6.2f}")


if __name__ == "__main__":
    main()
