"""`sonify play` and `sonify panic`: live performance."""

from __future__ import annotations

import argparse
import sys
import threading
from itertools import islice
from pathlib import Path

from ..errors import SonifyError, Terminated
from . import options
from .common import VIRTUAL, add_model_args, add_sampler_args, generation, model_settings, read_text

LIVE_PAGE = "127.0.0.1:8765"


def register(sub: argparse._SubParsersAction) -> None:
    play = sub.add_parser(
        "play",
        help="perform live: MIDI out to your DAW and synths, live audio, the text on screen as it sounds",
        description=(
            "Run the model (or read a text, or what you type) and play it in real time, a fixed latency ahead: "
            "MIDI to a port (or a virtual port named sonify), our synth to the audio output, telemetry as OSC. "
            "Ctrl-C stops and silences every note."
        ),
    )
    play.add_argument("prompt", nargs="?", default="", help="text to generate from (default: start from nothing)")
    play_source = play.add_mutually_exclusive_group()
    play_source.add_argument("--read", metavar="FILE", help="read this text file ('-' for stdin)")
    play_source.add_argument("--type", action="store_true", help="read what you type, line by line")
    play_source.add_argument(
        "--trace",
        metavar="FILE",
        help="perform a saved trace (.trace.jsonl) in real time, as it was played or rendered (no model needed)",
    )
    play_length = play.add_argument_group("length (one of; default: until the model stops or Ctrl-C)")
    play_length.add_argument("--tokens", type=options.TOKENS, metavar="N", help="tokens to generate")
    play_length.add_argument("--duration", type=options.SECONDS, metavar="SECONDS", help="play for this long")
    outs = play.add_argument_group("outputs (at least one)")
    outs.add_argument(
        "--midi-out",
        nargs="?",
        const=VIRTUAL,
        metavar="PORT",
        help="send MIDI to PORT, or to a virtual port 'sonify' if none is named",
    )
    outs.add_argument("--audio", action="store_true", help="play our synth on the audio output")
    outs.add_argument("--osc", metavar="HOST:PORT", help="send per-token telemetry as OSC to HOST:PORT")
    outs.add_argument(
        "--page",
        nargs="?",
        const=LIVE_PAGE,
        metavar="HOST:PORT",
        help=f"serve a page where the text lights up as it sounds, with the telemetry and notes (default address {LIVE_PAGE})",
    )
    timing = play.add_argument_group("timing")
    timing.add_argument(
        "--latency", type=options.LATENCY, default=0.3, metavar="SECONDS", help="how far ahead events are scheduled (default: 0.3)"
    )
    timing.add_argument("--block", type=options.BLOCK, default=256, metavar="FRAMES", help="audio block size (default: 256)")
    timing.add_argument("--device", metavar="NAME", help="audio output device (default: the system's)")
    timing.add_argument("--no-clock", action="store_true", help="send no MIDI clock")
    timing.add_argument(
        "--realtime",
        action="store_true",
        help="run the scheduler, the player, the synth's renderer and MIDI inputs under real-time scheduling "
        "where the OS allows it (Linux: rtprio rights); for a machine given over to the performance",
    )
    timing.add_argument(
        "--clock-in",
        metavar="PORT",
        help="follow the MIDI clock arriving on this input (24 a beat): start on its Start, keep to its beat, end on its Stop (MIDI, OSC and page outputs)",
    )
    timing.add_argument(
        "--link",
        action="store_true",
        help="join the Ableton Link session on the local network: keep to its tempo and beat, starting on its next bar "
        "(the preset's bar is the quantum; MIDI, OSC and page outputs; needs pip install 'sonify[link]')",
    )
    play.add_argument(
        "--control-in",
        metavar="PORT",
        help="steer from a MIDI controller on this input, as the preset's [controls] table binds its CCs and notes "
        "(temperature, top-p, hold, voice mutes and gains)",
    )
    play.add_argument("--preset", default="default", help="preset name or .toml file (default: default)")
    play.add_argument(
        "--record",
        action="append",
        default=[],
        metavar="FILE",
        help="also write what was played: .wav/.flac (audio) or .mid (MIDI); repeatable",
    )
    play.add_argument(
        "--score-out",
        action="append",
        default=[],
        metavar="FILE",
        help="also write the Score that was played, as `sonify score` writes it: .mid (MIDI file) or .json (transcript); repeatable",
    )
    play.add_argument(
        "--force", action="store_true", help="replace --record and --score-out files of the same name (default: refuse)"
    )
    play.add_argument("--quiet", action="store_true", help="no terminal view")
    add_model_args(play)
    add_sampler_args(play)
    play.set_defaults(run=run_play)

    panic = sub.add_parser(
        "panic",
        help="silence a MIDI port: all notes off on all 16 channels",
        description="Send note-off for every note, All Notes Off and All Sound Off on every channel.",
    )
    panic.add_argument("--midi-out", metavar="PORT", help="the port (default: every MIDI output on this machine)")
    panic.set_defaults(run=run_panic)


def _on_sigterm(signum, frame) -> None:
    raise Terminated


def _stop_on(event, stop) -> None:
    event.wait()
    stop.set()


def _frames_for_play(args: argparse.Namespace, engine, gen, steer=None):
    if args.type:
        reader = engine.reader()

        def typed():
            for line in sys.stdin:
                yield from reader.feed(line)

        return typed()
    if args.read is not None:
        text, _ = read_text(args.read)
        ids = engine.model.tokenizer.encode(text)
        return engine.read_ids(ids[: args.tokens] if args.tokens else ids)
    limit = args.tokens if args.tokens is not None else 1_000_000
    return engine.generate(
        args.prompt, max_tokens=limit, sampler=gen.sampler, seed=gen.seed, stop_at_eos=args.duration is None, steer=steer
    )


def _remote_frames_for_play(args: argparse.Namespace, settings, gen, lost: list, steer=None):
    """The server's Frames; if the server is lost for good, the stream just ends (the music
    closes as at any end, no note left hanging) and the reason is kept in ``lost``."""
    from ..model.remote import ServerLost
    from ..model.sources import StreamRequest, open_stream

    if args.type:
        raise SonifyError("--type reads what you type with the model in-process; with --server give a prompt or --read FILE")
    text = read_text(args.read)[0] if args.read is not None else None
    limit = args.tokens if args.tokens is not None else 1_000_000
    stream = open_stream(settings, StreamRequest(args.prompt, text, limit, gen, args.duration is None, steer))
    frames = islice(stream.frames, args.tokens) if text is not None and args.tokens else stream.frames

    def until_lost():
        try:
            yield from frames
        except ServerLost as exc:
            lost.append(exc)

    return until_lost(), stream.describe


def _switch_presets(args: argparse.Namespace, steering) -> None:
    """Load the presets the ``preset`` controls switch to (a bad one exits now, not mid-set);
    say that a ``tempo`` control gives way to a followed clock."""
    names = sorted({n for b in steering.bindings.values() for n in b.presets})
    if names and args.audio:
        raise SonifyError("--control-in: a preset switch moves the MIDI, OSC and page outputs; our synth (--audio) keeps one preset's sound")
    from ..music.preset import load_preset

    steering.presets = {n: load_preset(n) for n in names}
    tempo = [f"{b.kind}{b.number}" for b in steering.bindings.values() if b.param == "tempo"]
    leader = "--clock-in" if args.clock_in is not None else "--link" if args.link else None
    if tempo and leader:
        print(f"{leader}: the leader sets the tempo; the tempo control ({', '.join(tempo)}) is ignored", file=sys.stderr)


def _model_for_play(args: argparse.Namespace, preset, lost: list, steering=None):
    """The model's Frames (in-process or from a server), its calibration, the voices and the
    model's name; ``steering`` sets the sampler's temperature and top-p as it generates."""
    from itertools import chain

    from ..model.engine import Engine
    from ..music.mapping import make_score

    gen = generation(args)
    settings = model_settings(args)
    sampling = steering is not None and not args.type and args.read is None
    if sampling:
        steering.sampler = gen.sampler
    if settings.server is not None:
        frames, describe = _remote_frames_for_play(args, settings, gen, lost, steering.steer if sampling else None)
        first = next(frames, None)  # the outputs are set up from the first token the server sends
        if first is None:
            raise lost[0] if lost else SonifyError("the server sent no tokens; give a prompt or a longer --tokens")
        voices = make_score([first], preset).voices
        # a server's model plays against the shipped model's calibration
        return chain([first], frames), None, voices, describe()[0]
    from ..pipeline import calibration_for

    model = settings.load()
    engine = Engine(model)
    calibration = calibration_for(model)
    voices = make_score(list(engine.generate("", max_tokens=1)), preset).voices
    return _frames_for_play(args, engine, gen, steering.steer if sampling else None), calibration, voices, model.name


def _trace_for_play(args: argparse.Namespace, preset, length):
    """A saved trace's Frames, cut and calibrated as `sonify score` does, so the same Score
    is played; with the voices, the model's name and the name the trace's files take."""
    from ..music.mapping import make_score
    from ..outputs.trace import Trace, trace_name
    from ..pipeline import cut_trace, trace_calibration

    trace = cut_trace(Trace.read(args.trace), preset, length)
    if not trace.frames:
        raise SonifyError(f"{args.trace} holds no tokens; nothing to play")
    calibration, _ = trace_calibration(trace)
    voices = make_score(trace.frames[:1], preset, calibration).voices
    return iter(trace.frames), calibration, voices, str(trace.header.get("model", "trace")), trace_name(args.trace)


def _write_score(score, paths: list[str], name: str) -> None:
    """The Score as `sonify score` writes it: a MIDI file (.mid) or the JSON transcript (.json)."""
    import io

    from ..outputs.files import atomic_write
    from ..outputs.midifile import score_to_midi
    from ..outputs.transcript import to_json

    for path in paths:
        if Path(path).suffix.lower() == ".mid":
            buffer = io.BytesIO()
            score_to_midi(score, title=name).save(file=buffer)
            with atomic_write(Path(path), "wb") as f:
                f.write(buffer.getvalue())
        else:
            with atomic_write(Path(path), "w") as f:
                f.write(to_json(score))
        print(f"wrote the Score to {path}", file=sys.stderr)


def run_play(args: argparse.Namespace) -> int:
    import signal

    from ..live.scheduler import Scheduler
    from ..music.preset import load_preset
    from ..pipeline import Length

    if args.prompt and (args.read is not None or args.type or args.trace is not None):
        raise SonifyError("give either a prompt, --read FILE, --type or --trace FILE, not two of them")
    length = Length(args.tokens, args.duration)
    if args.midi_out is None and not args.audio and args.osc is None and args.page is None:
        raise SonifyError("choose an output: --midi-out [PORT], --audio, --osc HOST:PORT and/or --page [HOST:PORT]")
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
    if args.clock_in is not None and args.audio:
        raise SonifyError(
            "--clock-in follows a MIDI clock with the MIDI, OSC and page outputs; our synth (--audio) keeps its own time"
        )
    if args.link:
        if args.clock_in is not None:
            raise SonifyError("follow one leader: --link or --clock-in, not both")
        if args.audio:
            raise SonifyError(
                "--link follows a Link session with the MIDI, OSC and page outputs; our synth (--audio) keeps its own time"
            )
        from ..live.link import require_aalink

        require_aalink()
    for path in args.score_out:
        if Path(path).suffix.lower() not in (".mid", ".json"):
            raise SonifyError(f"--score-out {path}: write .mid (MIDI file) or .json (transcript)")
        if not Path(path).parent.is_dir():
            raise SonifyError(f"--score-out {path}: folder {Path(path).parent} does not exist")
    if not args.force:
        from ..outputs.files import refuse_existing

        # before the performance, which cannot be played again
        refuse_existing([*args.record, *args.score_out], instead="another file name")
    preset = load_preset(args.preset)
    if args.control_in is not None and not preset.controls:
        raise SonifyError(
            f"--control-in: the {preset.name} preset binds no controls; give it a [controls] table (see the default preset)"
        )
    steering = None
    if args.control_in is not None:
        from ..live.control import Steering

        steering = Steering(preset.controls)
        _switch_presets(args, steering)
    lost: list = []
    name = "piece"
    if args.trace is not None:
        frames, calibration, voices, model_name, name = _trace_for_play(args, preset, length)
        max_seconds = None  # the trace is cut as `sonify score --duration` cuts it
    else:
        frames, calibration, voices, model_name = _model_for_play(args, preset, lost, steering)
        max_seconds = args.duration
    scheduler = Scheduler(realtime=args.realtime)
    midi = audio = osc = view = page = follower = None
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if args.clock_in is not None:
            from ..live.follow import ClockFollower, FollowingScheduler
            from ..live.midi import open_input

            port = open_input(args.clock_in, realtime=args.realtime)
            follower = ClockFollower(preset.music.tempo)
            follower.listen(port)
            scheduler = FollowingScheduler(follower, scheduler)
            print(f"following the MIDI clock on {args.clock_in}: waiting for its Start", file=sys.stderr)
        if args.link:
            from ..live.follow import FollowingScheduler
            from ..live.link import LinkFollower

            # Link looks for the session's peers while the outputs open; ``join`` chooses beat 0.
            follower = LinkFollower(preset.music.tempo, preset.music.time_signature[0])
            scheduler = FollowingScheduler(follower, scheduler)
        if steering is not None:
            from ..live.midi import open_input

            steering.listen(open_input(args.control_in, "--control-in", realtime=args.realtime))
            bound = ", ".join(f"{b.kind}{b.number} {b.param}" for b in preset.controls)
            print(f"steering from {args.control_in}: {bound}", file=sys.stderr)
        if args.page is not None:
            page = _live_page(args, scheduler, preset, model_name, voices)
        if args.midi_out is not None:
            from ..live.midi import MidiOut, open_output

            channels = {v.channel for v in voices}
            sent = any(Path(p).suffix.lower() == ".mid" for p in args.record)  # else the memory stays bounded
            midi = MidiOut(open_output(None if args.midi_out == VIRTUAL else args.midi_out), scheduler, channels, keep=sent)
        if args.audio:
            from ..live.audio import AudioOut

            audio = AudioOut(preset.synth, preset.music.tempo, voices, block=args.block, device=args.device,
                             record=any(Path(p).suffix.lower() != ".mid" for p in args.record), realtime=args.realtime)  # fmt: skip
        if args.osc is not None:
            from ..live.osc import OscOut

            osc = OscOut(args.osc, scheduler)
        if not args.quiet and not args.type and sys.stdout.isatty():
            from ..live.view import TerminalView

            view = TerminalView(f"sonify · {preset.name} · {model_name}")
        from ..live.player import LiveTiming, Player

        # Unless the Score is written, the report needs none: the memory stays bounded however long it plays.
        keep = bool(args.score_out)
        timing = LiveTiming(
            latency=args.latency, clock=not args.no_clock, max_seconds=max_seconds, keep=keep, follow=follower, steering=steering,
            realtime=args.realtime,
        )
        player = Player(preset, midi=midi, audio=audio, osc=osc, view=view, page=page, scheduler=scheduler, timing=timing)
        if follower is not None:  # the leader's Stop ends the performance, every note silenced
            threading.Thread(target=_stop_on, args=(follower.stopped, player.stop_request), daemon=True).start()
        if args.link:
            follower.join()
            peers = f"{follower.peers} other peer{'s' if follower.peers != 1 else ''}" if follower.peers else "no other peer yet"
            print(f"joined the Link session ({peers}, {follower.tempo:g} bpm): starting on its next bar", file=sys.stderr)
        report = player.play(frames, calibration)
    finally:
        signal.signal(signal.SIGTERM, previous)
        scheduler.stop()
        if follower is not None:
            scheduler.scheduler.stop()
            follower.close()
        if steering is not None:
            steering.close()
        if midi is not None:
            midi.close()
        if page is not None:
            page.close()
    for path in args.record:
        if Path(path).suffix.lower() == ".mid":
            midi.write(path, report.start, preset.music.tempo)
        else:
            from ..outputs.audio import write_audio

            write_audio(path, audio.recording(), audio.sample_rate)
        print(f"recorded {path}", file=sys.stderr)
    if report.score is not None and report.interrupted is None:
        _write_score(report.score, args.score_out, name)
    budget = sum(report.token_seconds)
    model_time = sum(report.model_seconds)
    print(
        f"played {report.tokens} tokens; {report.holds} holds ({report.held_seconds:.2f} s), {report.xruns} xruns; "
        + (f"{report.late_to_synth} events reached the synth late; " if report.late_to_synth else "")
        + f"the model needed {model_time:.1f} s for {budget:.1f} s of music",
        file=sys.stderr,
    )
    if steering is not None:
        print(f"{steering.received} control changes", file=sys.stderr)
    if report.interrupted is not None and follower is not None and follower.stopped.is_set():
        print("the clock stopped; all notes off", file=sys.stderr)
        return 0
    if report.interrupted is not None:
        print("stopped; all notes off", file=sys.stderr)
        return 143 if isinstance(report.interrupted, Terminated) else 130
    if lost:
        raise SonifyError(f"{lost[0]}; the music ended there, all notes off")
    return 0


def _live_page(args: argparse.Namespace, scheduler, preset, model_name: str, voices):
    from ..live.page import LivePage
    from ..outputs.page import PageInfo

    title = args.prompt.strip() or (Path(args.read).stem if args.read and args.read != "-" else "") or "sonify · live"
    page = LivePage(args.page, scheduler)
    page.describe(PageInfo(title, f"{preset.name} preset · {model_name} · live"), voices)
    print(f"live page: {page.url}", file=sys.stderr)
    return page


def run_panic(args: argparse.Namespace) -> int:
    from ..live.midi import output_names, panic_port

    names = [args.midi_out] if args.midi_out else output_names()
    if not names:
        raise SonifyError("no MIDI output ports on this machine; name one with --midi-out PORT")
    for name in names:
        count = panic_port(name)
        print(f"{name}: {count} messages (all notes off on 16 channels)", file=sys.stderr)
    return 0
