"""Peak memory of a render against the piece's length: the audio is rendered and written
block by block, so a 60-minute piece should need about what a 5-minute one does.

    flock /tmp/sonify-cpu.lock python benchmarks/bench_render_memory.py [--minutes 5,60] [--preset default]

The default model reads benchmarks/texts/lighthouse-keeper.txt once; its frames, repeated,
make a trace of each length (cut where the preset's piece reaches it). Each trace is
rendered by a fresh ``python -m sonify score TRACE`` process (every default output: the
24-bit WAV, MIDI, transcripts, the trace), and its peak resident memory is the child's
``ru_maxrss`` as the kernel reports it at its end. Printed: each length's peak RSS and
render time, what the peak grows by per token from the shortest to the longest, and the
ratio of the longest's peak to the shortest's (acceptance: at most 1.10 from 5 to 60
minutes). ``--sonify DIR`` renders with the sonify of another checkout
(to compare before and after a change).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TEXT = ROOT / "benchmarks" / "texts" / "lighthouse-keeper.txt"


def long_trace(frames: list, header: dict, preset, seconds: float):
    """A trace whose piece lasts ``seconds``: ``frames`` repeated (renumbered), then cut."""
    from sonify.music.mapping import make_score, shortest_prefix
    from sonify.outputs.trace import Trace
    from sonify.pipeline import trace_calibration

    calibration, _ = trace_calibration(Trace(header, frames))
    copies = int(seconds / make_score(frames, preset, calibration).end) + 2
    tiled = [dataclasses.replace(f, index=k * len(frames) + i) for k in range(copies) for i, f in enumerate(frames)]
    cut = shortest_prefix(tiled, preset, seconds, calibration)
    piece_seconds = make_score(tiled[:cut], preset, calibration).end
    return Trace(header, tiled[:cut]), piece_seconds


def render_in_child(trace_path: Path, out: Path, preset: str, sonify_root: Path) -> tuple[float, float]:
    """Render ``trace_path`` with the sonify in ``sonify_root``, in a fresh process: (peak
    RSS in MB, wall seconds)."""
    env = {**os.environ, "PYTHONPATH": str(sonify_root)}
    command = [sys.executable, "-m", "sonify", "score", str(trace_path), "--preset", preset, "--out", str(out), "--force", "--quiet"]
    start = time.perf_counter()
    # Run from the output folder: ``python -m`` puts the working folder first on the path.
    proc = subprocess.Popen(command, env=env, cwd=out.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read()
    if proc.returncode != 0:
        sys.exit(f"the render failed (exit {proc.returncode}): {stderr.strip()}")
    return usage.ru_maxrss / 1024.0, wall  # Linux reports kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="5,60", help="the pieces' lengths, comma-separated (default 5,60)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--sonify", type=Path, default=ROOT, help="the checkout whose sonify renders (default: this one)")
    args = parser.parse_args()

    import soundfile

    from sonify.music.preset import load_preset
    from sonify.pipeline import run_model

    preset = load_preset(args.preset)
    source = run_model(text=TEXT.read_text(encoding="utf-8"))
    lengths = [float(m) for m in args.minutes.split(",")]
    print(f"sonify from {args.sonify}; {args.preset} preset; trace: {len(source.frames)} tokens of {TEXT.name}, repeated")
    print(f"{'minutes':>8s} {'tokens':>7s} {'audio min':>9s} {'peak RSS MB':>12s} {'render s':>9s}")
    peaks, counts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in lengths:
            trace, piece = long_trace(list(source.frames), source.header, preset, minutes * 60.0)
            path = trace.write(Path(tmp) / f"piece-{minutes:g}.trace.jsonl")
            out = Path(tmp) / f"out-{minutes:g}"
            peak, wall = render_in_child(path, out, preset.name, args.sonify.resolve())
            audio = next(out.glob("*.wav"))
            seconds = soundfile.info(str(audio)).duration
            for f in out.iterdir():
                f.unlink()
            peaks.append(peak)
            counts.append(len(trace.frames))
            print(f"{minutes:8g} {len(trace.frames):7d} {seconds / 60:9.1f} {peak:12.1f} {wall:9.1f}", flush=True)
    if len(peaks) > 1:
        per_token = (peaks[-1] - peaks[0]) * 2**20 / max(counts[-1] - counts[0], 1)
        print(f"growth: {per_token:.0f} bytes of peak RSS per token ({counts[-1] - counts[0]} tokens more)")
        print(f"peak RSS ratio, {lengths[-1]:g} min over {lengths[0]:g} min: {peaks[-1] / peaks[0]:.3f} (goal: at most 1.10)")


if __name__ == "__main__":
    main()
