"""Soak: a long live performance at constant cost. Does anything grow with the length?

    python benchmarks/bench_live_soak.py [--tokens 20000] [--speed 20] [--preset default] [--no-audio]

Starts its own JACK server (dummy driver, 48 kHz, 256-frame periods, realtime if allowed)
and drives the whole live path (the growing Score, the scheduler, our synth on live audio,
MIDI to a virtual port read back by a real MIDI input, MIDI clock) with ``--tokens``
synthetic frames (a poem's words in sub-word tokens, lines and stanzas, telemetry that
varies) as fast as they are taken. To get through them in minutes, the preset's tempo and
pace are both multiplied by ``--speed``: every beat-based length shrinks alike, the
mapping's work per token is the same. When the last token is taken, the performance is
stopped as Ctrl-C stops it, mid-note. Prints, side by side:

- the player's CPU time per token (mapping and dispatch, its thread only, so other load on
  the machine does not count) over the tokens after the first 500 and over the last 1,000,
  and their ratio (goal <= 1.2);
- the process's RSS after the first 500 tokens and at the end (goal: growth <= 50 MB);
- MIDI note-ons that arrived more than one JACK period after their due time (goal 0), each
  timed on JACK's clock by a real input port (sonify's ``MidiInput``);
- how late the scheduler's thread sent each note-on (against its due time less the MIDI
  advance): what of the lateness above is the wake-up's, not JACK's;
- xruns, holds, the synth's render time a block, and notes left sounding after the stop (goal 0);
- the load the machine had meanwhile (load average, CPU time its host took, "steal");
- last, the four acceptance lines, each with its goal and whether it is met.

With ``--realtime`` (as ``sonify play --realtime``) the live path's threads (the scheduler's,
the player's, the synth's renderer, the MIDI input's) ask for real-time scheduling
(``SCHED_FIFO``, ``sonify.live.realtime``) where the OS allows it; without, they run at
normal priority, as ``sonify play`` does by default. The model's
thread (here the synthetic frames') stays at normal priority, as in ``sonify play``, unless
``--model-realtime``: a thread of normal priority that holds the GIL when other work
preempts it keeps the real-time ones waiting, and this shows how much that costs.

``--no-audio`` leaves the synth out: the MIDI path alone. At ``--speed`` N the synth renders N
times the notes a second of a performance; where that is more than the machine renders in
time, its load delays the scheduler's thread too, and the late MIDI shows the synth's pace,
not the MIDI path's.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# A poem's lines as a tokenizer splits them (sub-word pieces, a newline token per line end).
LINES = [
    ["The", " sun", "light", " falls", " on", " the", " water", ","],
    [" and", " the", " ri", "ver", " runs", " long", " into", " the", " eve", "ning", "."],
    ["Some", " where", " a", " bell", " is", " ring", "ing", " for", " no", " one", ";"],
    [" the", " fields", " are", " qui", "et", ",", " the", " birds", " have", " gone", "."],
]
STANZA = 24  # lines a stanza (a stanza's silence lasts seconds, however fast the pace)
LAYERS = 12  # the default model's layer count is of this order
WINDOW = 0.25  # seconds: a note-on this much older than the next arrival of its pitch was lost


def tokens() -> Iterator[str]:
    """The poem's token texts, forever: lines of words, a blank line after every stanza."""
    line = 0
    while True:
        yield from LINES[line % len(LINES)]
        line += 1
        yield "\n\n" if line % STANZA == 0 else "\n"


def rss_mb() -> float:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return math.nan


def cpu_seconds() -> tuple[float, float]:
    """(all CPUs' time, the part the host took from this machine: steal), seconds, since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return sum(fields[:8]) / hz, (fields[7] if len(fields) > 7 else 0) / hz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000, help="tokens to perform (default 20000)")
    parser.add_argument("--speed", type=float, default=20.0, help="tempo and pace multiplied by this (default 20)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--no-clock", action="store_true", help="send no MIDI clock")
    parser.add_argument(
        "--realtime", action="store_true", help="the live path's threads real-time where allowed (sonify play --realtime)"
    )
    parser.add_argument(
        "--model-realtime",
        action="store_true",
        help="the (synthetic) model's thread real-time too: shows what the GIL held by a model thread of normal priority costs",
    )
    parser.add_argument(
        "--no-audio",
        action="store_true",
        help="leave our synth out (the MIDI path alone: at a pace the synth cannot render in time, its load makes MIDI late too)",
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="run stall_probe.c (a C thread at real-time priority 80 on each CPU) beside it: which late note-ons came "
        "while the machine itself held a CPU back",
    )
    parser.add_argument("--render-chunk", type=int, default=None, help="blocks our synth renders at a time (AudioOut's default)")
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="the GIL's switch interval while playing, seconds (Player's default)"
    )
    args = parser.parse_args()
    if args.tokens < 2000:
        sys.exit("--tokens has to be at least 2000 (the figures compare token 500 on with the last 1000)")

    from jackrig import run_on_jack

    run_on_jack(lambda jack: run(args, jack))


class Arrivals:
    """A real MIDI input's callback: note-on arrival times per (channel, pitch), in arrays
    allocated up front, and which notes are still sounding (bounded). The input is sonify's
    own (``midi.MidiInput``): each arrival is timed on JACK's clock, not when a Python callback
    in JACK's thread got the GIL (which would count the receiver's wait as the sender's lateness)."""

    def __init__(self, most: int):
        self.times = np.full(most, np.nan)
        self.keys = np.full(most, -1, dtype=np.int64)
        self.count = 0
        self.sounding: dict[tuple[int, int], int] = {}
        self.all_off: set[int] = set()  # channels an All Notes Off (CC 123) came on

    def __call__(self, message, now: float) -> None:
        if message.type == "note_on" and message.velocity > 0:
            key = (message.channel, message.note)
            self.sounding[key] = self.sounding.get(key, 0) + 1
            if self.count < len(self.times):
                self.times[self.count] = now
                self.keys[self.count] = ident(message.channel, message.note, message.velocity)
            self.count += 1
        elif message.type in ("note_on", "note_off"):
            key = (message.channel, message.note)
            self.sounding[key] = max(self.sounding.get(key, 0) - 1, 0)
        elif message.type == "control_change" and message.control == 123:
            self.all_off.add(message.channel)

    def unended(self) -> int:
        """Note-ons that no note-off answered (one lost in an xrun counts here too)."""
        return sum(self.sounding.values())

    def hanging(self) -> int:
        """Notes a synth would still sound: unended ones on a channel that got no All Notes Off."""
        return sum(n for (channel, _), n in self.sounding.items() if channel not in self.all_off)


def run(args, jack) -> None:
    from traces import frame

    from sonify import load_preset
    from sonify.live.audio import AudioOut
    from sonify.live.midi import MidiOut, open_input, open_output
    from sonify.live.player import LiveTiming, Player
    from sonify.live.realtime import PLAYER_PRIORITY, ask_realtime
    from sonify.live.scheduler import Scheduler
    from sonify.music.mapping import make_score

    base = load_preset(args.preset)
    music = replace(base.music, tempo=base.music.tempo * args.speed)
    timing = replace(base.timing, words_per_minute=base.timing.words_per_minute * args.speed)
    preset = replace(base, music=music, timing=timing)

    def frames(limit: int | None, player: Player | None = None) -> Iterator:
        if player is not None and args.model_realtime:  # this generator runs in the model's thread
            marks["model_realtime"] = ask_realtime(PLAYER_PRIORITY, "the synthetic model")
        for i, text in enumerate(tokens()):
            if limit is not None and i == limit:
                return
            if i == 500:
                marks["rss_500"] = rss_mb()
            if i and i % 2000 == 0:
                print(f"  {i} tokens, {time.monotonic() - started:.0f} s, RSS {rss_mb():.1f} MB", file=sys.stderr, flush=True)
            if i == args.tokens + 72 and player is not None:  # the player is a queue (64) and a batch behind
                marks["stopped"] = time.monotonic()
                player.stop_request.set()  # as Ctrl-C: stop mid-performance, every note silenced
            wave = math.sin(i * 0.37)
            yield frame(i, text=text, logprob=-1.5 - 1.2 * wave, entropy=2.0 + wave, layers=LAYERS,
                        value=1.0 + 0.5 * math.cos(i * 0.11))  # fmt: skip

    marks: dict[str, float] = {}
    voices = make_score(list(frames(4)), preset).voices
    realtime = args.realtime
    scheduler = Scheduler(realtime=realtime)
    # What was due when, and sent when, for the note-ons: allocated up front, so the RSS shows the live path's own growth.
    most = args.tokens * 8
    due_times, due_keys, scheduled = np.full(most, np.nan), np.full(most, -1, dtype=np.int64), [0]
    sent_times, sent_keys, sent = np.full(most, np.nan), np.full(most, -1, dtype=np.int64), [0]

    class CountingMidi(MidiOut):
        """The real MIDI sink; only notes down when each note-on is due (the goal's reference).
        Each note-on's velocity is a count (1 to 127 in turn), so that an arrival is matched to
        its own note-on, not to the next one of its pitch when one was lost on the way."""

        def note_on(self, due, note):
            k = scheduled[0]
            note = replace(note, velocity=1 + k % 127)
            if k < most:
                due_times[k], due_keys[k] = due, ident(note.channel, note.pitch, note.velocity)
            scheduled[0] += 1
            super().note_on(due, note)

        def send(self, message):
            k = sent[0]
            if message.type == "note_on" and message.velocity > 0 and k < most:
                sent_times[k], sent_keys[k] = time.monotonic(), ident(message.channel, message.note, message.velocity)
                sent[0] += 1
            super().send(message)

    midi = CountingMidi(open_output(None), scheduler, {v.channel for v in voices}, keep=False)
    arrivals = Arrivals(most)
    receiver = open_input("sonify:out", "the benchmark's receiver", realtime=realtime)
    receiver.callback = arrivals
    chunk = {} if args.render_chunk is None else {"chunk": args.render_chunk}
    audio = (
        None if args.no_audio else AudioOut(preset.synth, preset.music.tempo, voices, block=args.block, realtime=realtime, **chunk)
    )
    player = Player(
        preset,
        midi=midi,
        audio=audio,
        scheduler=scheduler,
        timing=LiveTiming(latency=0.3, clock=not args.no_clock, keep=False, realtime=realtime),
    )
    if args.switch_interval is not None:
        player.switch_interval = args.switch_interval
    probe = Probe() if args.probe else None
    rss_start = rss_mb()
    started = time.monotonic()
    cpu_start = cpu_seconds()
    report = player.play(frames(None, player))
    wall = time.monotonic() - started
    cpu_end = cpu_seconds()
    load = os.getloadavg()
    rss_end = rss_mb()
    stalls = probe.stop() if probe is not None else None
    time.sleep(0.5)  # the panic's messages arrive
    receiver.close()
    scheduler.stop()
    midi.close()

    # CPU per token: steps after token 500 (the first stanzas, every voice started) against the last 1000 tokens.
    seconds, taken = np.array(report.compute_seconds), np.array(report.compute_tokens)
    before = np.concatenate([[0], taken[:-1]])
    early = (before >= 500) & (taken <= 1500)
    late = before >= taken[-1] - 1000
    per_early = seconds[early].sum() / max((taken[early] - before[early]).sum(), 1) * 1e6
    per_late = seconds[late].sum() / max((taken[late] - before[late]).sum(), 1) * 1e6

    # Note-ons against their due times (matched in order per channel and pitch), up to the stop.
    n = min(arrivals.count, scheduled[0], most)
    errors, dues, lost = match(arrivals.times[:n], arrivals.keys[:n], due_times[: scheduled[0]], due_keys[: scheduled[0]])
    period = jack.period_seconds
    late_notes = int(np.sum(errors > period))
    # When each note-on was sent against when it was to be sent (due less the MIDI advance).
    woken, send_dues, _ = match(
        sent_times[: sent[0]], sent_keys[: sent[0]], due_times[: scheduled[0]] - midi.advance, due_keys[: scheduled[0]]
    )

    blocks = "no audio" if audio is None else f"audio blocks {args.block}, rendered {audio.chunk} at a time, {audio.ahead} ahead"
    print(f"JACK dummy, 48 kHz, period {jack.period} ({period * 1000:.2f} ms), realtime {jack.realtime}; {blocks}")
    threads = (
        f"scheduler {'SCHED_FIFO' if scheduler.realtime else 'normal'}, player {'SCHED_FIFO' if report.realtime else 'normal'}"
    )
    threads += f", model {'SCHED_FIFO' if marks.get('model_realtime') else 'normal'}"
    if audio is not None:
        threads += f", synth renderer {'SCHED_FIFO' if audio.realtime else 'normal'}"
    steal = (cpu_end[1] - cpu_start[1]) / max(cpu_end[0] - cpu_start[0], 1e-9)
    print(
        f"threads: {threads}{' (--realtime)' if realtime else ''}; machine: {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} (1 min) at the end, host steal {steal:.1%} of CPU time during the run"
    )
    print(
        f"{args.preset} preset at {args.speed:g}x ({preset.music.tempo:g} bpm, {preset.timing.words_per_minute:g} words a minute), "
        f"MIDI clock {'off' if args.no_clock else 'on'}, GIL switch interval {player.switch_interval * 1000:g} ms: {report.tokens} tokens in {wall:.1f} s wall "
        f"({report.tokens / wall:.0f} tokens/s), {arrivals.count} MIDI notes"
    )
    print(f"{'':34s}{'tokens 500-1500':>17s}{'last 1000':>12s}{'ratio':>8s}   goal")
    print(f"{'player CPU per token (us)':34s}{per_early:17.1f}{per_late:12.1f}{per_late / per_early:8.2f}   <= 1.2")
    rss_500 = marks.get("rss_500", math.nan)
    print(
        f"{'RSS (MB; at start ' + f'{rss_start:.0f}' + ')':34s}{rss_500:17.1f}{rss_end:12.1f}{rss_end - rss_500:+8.1f}   growth <= 50 MB"
    )
    if not errors.size:  # nothing arrived: no figures to give, but what the server said may say why
        sys.exit(f"no MIDI note-on arrived ({scheduled[0]} scheduled, {sent[0]} sent); the JACK server said:\n{jack.log_summary()}")
    worst = float(np.nanmax(errors)) * 1000
    print(
        f"MIDI note-ons later than one period: {late_notes} of {errors.size} "
        f"(median {np.median(errors) * 1000:+.2f} ms, p99 {np.percentile(errors, 99) * 1000:+.2f}, worst {worst:+.2f}; goal 0); "
        f"{lost} due before the stop never arrived"
    )
    print(f"scheduler: {scheduler.calls} calls, worst {scheduler.worst * 1000:.2f} ms late")
    if woken.size:
        print(
            f"note-ons sent by the scheduler after their time: median {np.median(woken) * 1000:+.2f} ms, p99 "
            f"{np.percentile(woken, 99) * 1000:+.2f}, worst {woken.max() * 1000:+.2f}; {int(np.sum(woken > 0.001))} more than 1 ms, "
            f"{int(np.sum(woken > period))} more than a period"
        )
    if stalls is not None:
        calls = np.array(scheduler.late_calls).reshape(-1, 2)
        late = [
            (dues, errors, "note-ons arrived"),
            (send_dues, woken, "note-ons sent"),
            (calls[:, 0], calls[:, 1], "scheduler calls"),
        ]
        if audio is not None:  # an xrun is noticed by the callback after the period that came late
            xruns = np.array(audio.xrun_times)
            late.append((xruns - 2 * period, np.full(xruns.size, 2 * period + 1e-9), "xruns (each the two periods before it)"))
        print(stalls.summary(period, late))
    starved = "no audio" if audio is None else f"{audio.starved} blocks not rendered in time"
    print(f"xruns: {report.xruns} ({starved}); holds: {report.holds} ({report.held_seconds:.2f} s)")
    if audio is not None:
        render = np.array(audio.render_busy) * 1000 / audio.chunk  # the latest renders' times a block (a bounded window)
        print(
            f"audio render a block over the last {render.size * audio.chunk} blocks: median {np.median(render):.2f} ms, "
            f"p99 {np.percentile(render, 99):.2f}, max {render.max():.2f} (a block lasts {args.block / audio.sample_rate * 1000:.2f} ms)"
        )
    print(
        f"notes left sounding after the stop: {arrivals.hanging()} (goal 0; {arrivals.unended()} note-ons without a note-off, "
        f"All Notes Off on every channel that played: {set(arrivals.all_off) >= {v.channel for v in voices}}); "
        f"stopped as Ctrl-C: {report.interrupted is not None}"
    )
    ratio, growth, hanging = per_late / per_early, rss_end - rss_500, arrivals.hanging()
    print("acceptance:")
    for what, value, met in (
        ("per-token compute, last 1000 tokens / tokens 500-1500 (goal <= 1.2x)", f"{ratio:.2f}x", ratio <= 1.2),
        ("RSS growth from token 500 to the end (goal <= 50 MB)", f"{growth:+.1f} MB", growth <= 50),
        ("MIDI note-ons later than one JACK period (goal 0)", f"{late_notes} of {errors.size}", late_notes == 0),
        ("notes left sounding after Ctrl-C (goal 0)", f"{hanging}", hanging == 0),
    ):
        print(f"  {what:72s}{value:>16s}   {'met' if met else 'NOT MET'}")


def ident(channel: int, pitch: int, velocity: int) -> int:
    """One number for a note-on's channel, pitch and velocity (the matching key)."""
    return (channel * 128 + pitch) * 128 + velocity


def match(times: np.ndarray, keys: np.ndarray, due_times: np.ndarray, due_keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Arrival minus due time of each arrived note-on, matched in order per (channel, pitch, velocity);
    a scheduled note-on more than ``WINDOW`` older than the next arrival of its pitch never
    arrived (an xrun drops events): it is counted as lost, not matched. Returns (errors, the due times they matched, lost)."""
    order = np.argsort(due_times, kind="stable")
    waiting: dict[int, list[float]] = {}
    for j in order:
        waiting.setdefault(int(due_keys[j]), []).append(float(due_times[j]))
    position: dict[int, int] = {}
    errors, matched, lost = [], [], 0
    for i in range(times.size):
        key = int(keys[i])
        dues, k = waiting.get(key, []), position.get(key, 0)
        while k < len(dues) and dues[k] < times[i] - WINDOW:
            k, lost = k + 1, lost + 1
        if k < len(dues):
            errors.append(times[i] - dues[k])
            matched.append(dues[k])
            k += 1
        position[key] = k
    stop = times.max() if times.size else 0.0
    lost += sum(1 for key, dues in waiting.items() for d in dues[position.get(key, 0) :] if d < stop - WINDOW)
    return np.array(errors), np.array(matched), lost


class Stalls:
    """The probe's late wake-ups: (CPU, due, seconds late) each."""

    def __init__(self, rows: list[tuple[int, float, float]], seconds: float):
        self.rows, self.seconds = rows, seconds

    def during(self, start: float, end: float) -> bool:
        """Whether a CPU was held back for more than a millisecond somewhere in [start, end]."""
        return any(due <= end and due + late >= start for _, due, late in self.rows)

    def chance(self, width: float) -> float:
        """How often a window of ``width`` seconds put anywhere in the run would meet a stall."""
        return min(sum(late + width for _, _, late in self.rows) / max(self.seconds, 1e-9), 1.0)

    def summary(self, period: float, late: list[tuple[np.ndarray, np.ndarray, str]]) -> str:
        """The stalls, and of each kind of late event (its due times, how late, what it is)
        those later than a period, how many overlap a stall, against chance."""
        lates = np.array([r[2] for r in self.rows]) if self.rows else np.zeros(0)
        text = (
            f"machine stalls (stall_probe.c, a C thread at SCHED_FIFO 80 on each CPU, {self.seconds:.0f} s): "
            f"{lates.size} wake-ups over 1 ms late, {int(np.sum(lates > period))} over a period, "
            f"worst {lates.max() * 1000 if lates.size else 0:.2f} ms"
        )
        for dues, errors, what in late:
            over = np.flatnonzero(errors > period)
            inside = sum(self.during(dues[i], dues[i] + errors[i]) for i in over)
            width = float(np.mean(errors[over])) if over.size else 0.0
            text += (
                f"\n  {what} over a period late: {over.size}, {inside} of them during a stall "
                f"(a window that long anywhere would meet one {self.chance(width):.0%} of the time)"
            )
        return text


class Probe:
    """stall_probe.c built with cc and run beside the benchmark (stopped by closing its input)."""

    def __init__(self):
        import subprocess
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        binary = Path(self._dir.name) / "stall_probe"
        subprocess.run(["cc", "-O2", "-pthread", "-o", str(binary), str(ROOT / "benchmarks" / "stall_probe.c")], check=True)
        self._out = (Path(self._dir.name) / "stalls.txt").open("w+")
        self._proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=self._out)
        self._started = time.monotonic()

    def stop(self) -> Stalls:
        self._proc.stdin.close()
        self._proc.wait(timeout=5)
        self._out.seek(0)
        rows = [(int(c), float(d), float(x)) for c, d, x in (line.split() for line in self._out.read().splitlines())]
        self._out.close()
        self._dir.cleanup()
        return Stalls(rows, time.monotonic() - self._started)


if __name__ == "__main__":
    main()
