"""Does the music follow the text? Pace, condensed art, silences at stanza breaks, form.

For every preset and every text (the example texts in benchmarks/texts/, or the files
given), the shipped model reads the text and each preset renders it; printed per preset:

- pace: words ÷ the piece's length (the end rest excluded), against the preset's stated
  words a minute (goal: within ±20 %; every stated pace within 60..240);
- art: the share of the piece's time spent on runs of non-word characters ÷ their share of
  the text's characters (goal ≤ 1.5);
- stanzas: how many stanza breaks fall silent in the audio: the mix stays at least 20 dB
  below the piece's median short-term level (RMS over 3 s windows) for at least 0.4 s
  before the next stanza (RMS over 100 ms windows, 10 ms apart) (goal: all of them);
- empty: the time taken by tokens that decode to nothing (goal: exactly 0);
- sections, and the share of line ends whose melody note lands on the tonic, third or fifth.

    python3 benchmarks/form_report.py                       # the example texts, every preset
    python3 benchmarks/form_report.py poem.txt --presets default,ambient
    python3 benchmarks/form_report.py --no-audio            # skip the stanza silences (fast)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

TEXTS = Path(__file__).resolve().parent / "texts"
PACE_TOLERANCE = 0.20
ART_LIMIT = 1.5
SILENCE_DB = 20.0
SILENCE_SECONDS = 0.4


def art_share_of_text(text: str) -> float:
    """Share of the text's non-space characters that stand in runs without letters or digits."""
    chunks = text.split()
    art = sum(len(c) for c in chunks if not any(ch.isalnum() for ch in c))
    return art / max(sum(len(c) for c in chunks), 1)


def levels(audio: np.ndarray, rate: int, window: float, hop: float) -> tuple[np.ndarray, np.ndarray]:
    """RMS level (dB) of ``window``-second windows every ``hop`` seconds, and their centre times."""
    mono = audio.mean(axis=1).astype(np.float64)
    n, h = int(window * rate), int(hop * rate)
    if mono.size < n:
        return np.zeros(0), np.zeros(0)
    power = np.concatenate([[0.0], np.cumsum(mono * mono)])
    starts = np.arange(0, mono.size - n + 1, h)
    mean = (power[starts + n] - power[starts]) / n
    return 10 * np.log10(np.maximum(mean, 1e-12)), (starts + n / 2) / rate


def silent_breaks(score, audio: np.ndarray, rate: int) -> tuple[int, int]:
    """(stanza breaks that fall silent, stanza breaks)."""
    short_term, _ = levels(audio, rate, 3.0, 0.5)
    if short_term.size == 0:
        return 0, 0
    threshold = float(np.median(short_term)) - SILENCE_DB
    fine, times = levels(audio, rate, 0.1, 0.01)
    starts = sorted(u.time for u in score.units)
    breaks = [r for r in score.rests if r.reason == "stanza"]
    silent = 0
    for rest in breaks:
        following = [t for t in starts if t > rest.time + 1e-6]
        end = following[0] if following else rest.time + rest.duration
        quiet = (times >= rest.time) & (times <= end) & (fine <= threshold)
        run = best = 0
        for q in quiet:
            run = run + 1 if q else 0
            best = max(best, run)
        silent += best * 0.01 >= SILENCE_SECONDS
    return silent, len(breaks)


def settled_share(score) -> float:
    """Share of line-ending words whose melody note is the section key's tonic, third or fifth."""
    from sonify.music.melody import STABLE
    from sonify.music.scales import key_pitch_class

    keys = {m.index: key_pitch_class(m.key) for m in score.marks if m.kind == "section"}
    melody = {n.token: n for n in score.notes_of("melody")}
    ends = [u for u in score.words if u.ends_line and u.tokens and u.tokens[0] in melody]
    if not ends:
        return float("nan")
    home = key_pitch_class(score.key)
    ok = sum((melody[u.tokens[0]].pitch - keys.get(u.section, home)) % 12 in STABLE for u in ends)
    return ok / len(ends)


def report(path: Path, presets: list[str], audio: bool, engine) -> bool:
    from sonify import load_preset, make_score
    from sonify.synth import render_audio

    text = path.read_text(encoding="utf-8")
    frames = list(engine.read(text))
    art_text = art_share_of_text(text)
    words = sum(1 for c in text.split() if any(ch.isalnum() for ch in c))
    print(f"\n{path.name}: {words} words, {len(frames)} tokens, art {art_text:.1%} of the characters")
    print(f"  {'preset':9s} {'stated':>6s} {'pace':>6s} {'ratio':>6s} {'art x':>6s} {'stanzas':>9s} {'empty s':>8s} {'sections':>8s} {'settled':>8s}")
    ok = True
    for name in presets:
        preset = load_preset(name)
        score = make_score(frames, preset)
        end_rest = sum(r.duration for r in score.rests if r.reason == "end")
        length = score.end - end_rest
        pace = len(score.words) / length * 60.0
        stated = preset.timing.words_per_minute
        art_time = sum(u.duration for u in score.units if u.kind == "art") / length
        art_ratio = art_time / art_text if art_text > 0 else 0.0
        empty = sum(c.duration for c in score.cues if c.text == "")
        sections = sum(m.kind == "section" for m in score.marks)
        if audio:
            silent, breaks = silent_breaks(score, render_audio(score, preset.synth), preset.synth.sample_rate)
            stanzas = f"{silent}/{breaks}"
        else:
            silent = breaks = 0
            stanzas = "-"
        passed = (
            abs(pace / stated - 1.0) <= PACE_TOLERANCE and 60 <= stated <= 240 and art_ratio <= ART_LIMIT and silent == breaks and empty == 0.0
        )
        ok &= passed
        print(
            f"  {name:9s} {stated:6.0f} {pace:6.1f} {pace / stated:6.2f} {art_ratio:6.2f} {stanzas:>9s} {empty:8.3f} "
            f"{sections:8d} {settled_share(score):8.0%}{'' if passed else '  FAIL'}"
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", type=Path, help="text files (default: benchmarks/texts/*)")
    parser.add_argument("--presets", default="", help="comma-separated presets (default: all)")
    parser.add_argument("--no-audio", action="store_true", help="skip rendering (no stanza-silence check)")
    args = parser.parse_args()
    from sonify import Engine, load_model, preset_names

    presets = [p for p in args.presets.split(",") if p] or preset_names()
    texts = args.texts or sorted(TEXTS.glob("*"))
    engine = Engine(load_model())
    ok = all([report(path, presets, not args.no_audio, engine) for path in texts])
    print("\nall goals met" if ok else "\nsome goals missed (FAIL above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
