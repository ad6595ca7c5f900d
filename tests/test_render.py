"""`sonify render` and `sonify score`, run as a user runs them, and every file they write
read back by a tool we did not write: mido and pretty_midi, FluidSynth, soundfile, srt,
webvtt-py."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest
import soundfile
import srt
import webvtt
from interrupt import interrupt
from users import unprivileged

from sonify import Length, OutputSettings, Trace, load_preset, render
from sonify.music.mapping import make_score
from sonify.outputs.midifile import TICKS_PER_BEAT, save_midi, score_to_midi
from sonify.outputs.transcript import lines, words
from sonify.pipeline import trace_calibration

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
KINDS = ("wav", "mid", "srt", "vtt", "lrc", "json", "trace.jsonl")


def sonify(*args, cwd=None, timeout=300, prefix=()):
    return subprocess.run(
        [*prefix, sys.executable, "-m", "sonify", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


@pytest.fixture(scope="module")
def piece(tmp_path_factory):
    """The README's first command, run in a fresh folder: renders/ appears beside it."""
    folder = tmp_path_factory.mktemp("first")
    done = sonify("render", "Shall I compare thee", "--tokens", "120", "--plot", cwd=folder)
    assert done.returncode == 0, done.stderr
    out = folder / "renders"
    trace = Trace.read(out / "shall-i-compare-thee.trace.jsonl")
    score = make_score(trace.frames, load_preset("default"))
    return out, "shall-i-compare-thee", trace, score


def test_render_writes_every_file(piece):
    out, name, trace, score = piece
    for kind in KINDS + ("png",):
        assert (out / f"{name}.{kind}").stat().st_size > 0, kind
    assert not list(out.glob("*.part")) and not list(out.glob(".*"))
    assert len(trace.frames) > 120  # the prompt's tokens, then 120 generated
    assert trace.header["seed"] == 0 and trace.header["prompt"] == "Shall I compare thee"


def test_midi_file_reads_back_in_mido_and_pretty_midi(piece):
    out, name, trace, score = piece
    midi = mido.MidiFile(out / f"{name}.mid", charset="utf-8")
    assert midi.type == 1 and midi.ticks_per_beat == TICKS_PER_BEAT
    names = [t.name for t in midi.tracks]
    assert names == [name] + [v.name for v in score.voices]
    conductor = list(midi.tracks[0])
    tempo = [m for m in conductor if m.type == "set_tempo"]
    assert len(tempo) == 1 and mido.tempo2bpm(tempo[0].tempo) == pytest.approx(96.0)
    assert [(m.numerator, m.denominator) for m in conductor if m.type == "time_signature"] == [(4, 4)]
    # Every track ends where the Score ends (within a tick).
    end_ticks = round(score.end_beats * TICKS_PER_BEAT)
    for track in midi.tracks:
        assert track[-1].type == "end_of_track"
        assert abs(sum(m.time for m in track) - end_ticks) <= 1
    for track, voice in zip(midi.tracks[1:], score.voices):
        programs = [m for m in track if m.type == "program_change"]
        assert [(m.channel, m.program) for m in programs] == [(voice.channel, voice.program)]
        ccs = {m.control for m in track if m.type == "control_change"}
        assert ccs == set(voice.controllers)
    # The words as lyrics, one event per word at its note, reading as the text's lines.
    lyrics = [m.text for m in midi.tracks[1] if m.type == "lyrics"]
    text = "".join(c.text for c in score.cues)
    assert len(lyrics) == len(score.units)
    assert "".join(lyrics).split() == text.split()
    assert "".join(lyrics).splitlines() == [" ".join(line.split()) for line in text.splitlines() if line.strip()]

    pm = pretty_midi.PrettyMIDI(str(out / f"{name}.mid"))
    assert pm.get_end_time() <= score.end + 1e-6
    by_track = {inst.name: inst for inst in pm.instruments}
    for voice in score.voices:
        expected = sorted((round(n.time, 3), n.pitch) for n in score.notes_of(voice.name))
        got = sorted((round(n.start, 3), n.pitch) for n in by_track[voice.name].notes) if expected else []
        assert len(got) == len(expected)
        assert all(abs(a[0] - b[0]) <= 0.002 and a[1] == b[1] for a, b in zip(got, expected))


def test_fluidsynth_renders_our_midi_file(piece, tmp_path):
    out, name, trace, score = piece
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None or not SOUNDFONT.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("fluidsynth and timgm6mb-soundfont are missing (.ci/system-packages installs them)")
        pytest.skip("no fluidsynth")
    wav = tmp_path / "fluid.wav"
    done = subprocess.run(
        [fluidsynth, "-ni", "-q", "-F", str(wav), "-r", "48000", str(SOUNDFONT), str(out / f"{name}.mid")],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    audio, sr = soundfile.read(wav)
    assert sr == 48000 and audio.shape[0] / sr >= score.end - 0.1
    assert np.abs(audio).max() > 0.01


def test_audio_reads_back(piece):
    out, name, trace, score = piece
    audio, sr = soundfile.read(out / f"{name}.wav")
    info = soundfile.info(out / f"{name}.wav")
    assert sr == 48000 and info.subtype == "PCM_24" and info.channels == 2
    assert audio.shape[0] / sr > score.end


def seconds(clock: str) -> float:
    h, m, s = clock.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_subtitles_read_back_in_srt_and_webvtt(piece):
    out, name, trace, score = piece
    expected = lines(score)
    subs = list(srt.parse((out / f"{name}.srt").read_text(encoding="utf-8")))
    assert [s.content for s in subs] == [ln.text for ln in expected]
    for sub, line in zip(subs, expected):
        assert sub.start.total_seconds() == pytest.approx(line.start, abs=0.001)
        assert sub.end.total_seconds() == pytest.approx(line.end, abs=0.001)
    captions = webvtt.read(str(out / f"{name}.vtt"))
    assert len(captions) == len(expected)
    for caption, line in zip(captions, expected):
        assert seconds(caption.start) == pytest.approx(line.start, abs=0.001)
        assert seconds(caption.end) == pytest.approx(line.end, abs=0.001)
        assert re.sub(r"<[^>]+>", "", caption.raw_text) == line.text.replace("&", "&amp;").replace("<", "&lt;")
    # The word timings inside each cue are the words' own times.
    stamps = re.findall(r"<(\d\d):(\d\d):(\d\d)\.(\d\d\d)>", (out / f"{name}.vtt").read_text())
    word_starts = [w.start for ln in expected for w in ln.words[1:]]
    assert [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in stamps] == pytest.approx(
        word_starts, abs=0.001
    )


def test_lrc_and_json_transcripts(piece):
    out, name, trace, score = piece
    lrc = (out / f"{name}.lrc").read_text(encoding="utf-8").splitlines()
    timed = [ln for ln in lrc if re.match(r"^\[\d\d:\d\d\.\d\d\]", ln)]
    assert len(timed) == len(lines(score))
    data = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    assert [t["text"] for t in data["tokens"]] == [f.text for f in trace.frames]
    assert [t["start"] for t in data["tokens"]] == pytest.approx([c.time for c in score.cues], abs=1e-6)
    assert [w["text"] for w in data["words"]] == [w.text for w in words(score)]
    # Each word's first melody note sounds when the word does.
    melody = {n.token: n.time for n in score.notes_of("melody")}
    for w in data["words"]:
        sounded = [melody[t] for t in w["tokens"] if t in melody]
        if sounded:
            assert min(sounded) >= w["start"] - 1e-6 and min(sounded) < w["end"]


def test_streamed_midi_and_json_are_the_files_made_in_memory(piece):
    """The render writes the MIDI file and the JSON transcript as they are made: the same
    bytes as mido saving the whole MidiFile, and as json.dumps of the whole transcript."""
    out, name, trace, _ = piece
    score = make_score(trace.frames, load_preset("default"), trace_calibration(trace)[0])  # as the render made it
    whole = io.BytesIO()
    score_to_midi(score, title=name).save(file=whole)
    streamed = io.BytesIO()
    save_midi(score, streamed, title=name)
    assert streamed.getvalue() == whole.getvalue()
    assert (out / f"{name}.mid").read_bytes() == whole.getvalue()
    text = (out / f"{name}.json").read_text(encoding="utf-8")
    assert json.dumps(json.loads(text), ensure_ascii=False, indent=1) + "\n" == text


def test_rerendered_trace_and_same_seed_give_identical_files(piece, tmp_path):
    out, name, trace, score = piece
    again = sonify("score", out / f"{name}.trace.jsonl", "--out", tmp_path / "score", "--name", name)
    assert again.returncode == 0, again.stderr
    for kind in ("wav", "mid", "srt", "vtt", "lrc", "json"):
        same = (tmp_path / "score" / f"{name}.{kind}").read_bytes() == (out / f"{name}.{kind}").read_bytes()
        assert same, kind  # (a bare bytes comparison makes pytest diff megabytes for minutes)
    fresh = render("Shall I compare thee", length=Length(tokens=120), output=OutputSettings(tmp_path / "api"))
    for kind in KINDS:
        same = (tmp_path / "api" / f"{name}.{kind}").read_bytes() == (out / f"{name}.{kind}").read_bytes()
        assert same, kind
    assert fresh.paths["audio"] == tmp_path / "api" / f"{name}.wav" and fresh.score == score


def test_duration_reading_and_flac(tmp_path):
    text = tmp_path / "poem.txt"
    text.write_text("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n")
    done = sonify(
        "render",
        "--read",
        text,
        "--duration",
        "6",
        "--preset",
        "podcast",
        "--format",
        "flac",
        "--bits",
        "16",
        "--rate",
        "44100",
        "--out",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    info = soundfile.info(tmp_path / "poem.flac")
    assert info.samplerate == 44100 and info.subtype == "PCM_16"
    data = json.loads((tmp_path / "poem.json").read_text())
    assert 6.0 <= data["duration"] < 9.0
    generated = render("Once", length=Length(duration=20.0), output=OutputSettings(tmp_path / "gen", outputs=("json",)))
    assert 20.0 <= generated.score.end < 22.0


BAD = [
    (["render", "--preset", "nope"], "unknown preset 'nope'; available: default, ambient"),
    (["render", "--duration", "0"], "--duration has to be a positive number of seconds"),
    (["render", "--tokens", "5", "--duration", "3"], "give either --tokens or --duration, not both"),
    (["render", "hello", "--read", "x.txt"], "give either a prompt, --read FILE or --trace FILE"),
    (["render", "--tokens", "0"], "--tokens has to be at least 1"),
    (["score", "missing.trace.jsonl"], "trace file missing.trace.jsonl does not exist"),
    (["render", "--soundfont", "none.sf2", "--tokens", "3"], "SoundFont none.sf2 does not exist"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    done = sonify(*args, "--out", tmp_path / "out", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_unwritable_output_path(tmp_path):
    (tmp_path / "file").write_text("x")
    done = sonify("render", "--tokens", "3", "--out", tmp_path / "file")
    assert done.returncode == 2 and "is a file; choose another --out" in done.stderr
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    done = sonify("render", "--tokens", "3", "--out", locked, prefix=unprivileged())  # root may write anywhere
    assert done.returncode == 2 and "permission denied" in done.stderr, done.stderr
    assert not any(locked.iterdir())
    done = sonify("render", "--tokens", "3", "--out", "/proc/sonify")
    assert done.returncode == 2 and "cannot create output folder /proc/sonify" in done.stderr


def test_ctrl_c_during_a_write_leaves_no_partial_file_and_no_process(piece, tmp_path):
    """SIGINT lands while an output is being written (its temporary file is seen): the
    command ends with 130, the temporary file is gone, and no process of it lives on."""
    out, name, trace, score = piece
    target = tmp_path / "out"
    seen: list[str] = []

    def writing() -> bool:
        seen.extend(p.name for p in target.glob(".*.part"))
        return bool(seen)

    cmd = [sys.executable, "-m", "sonify", "score", str(out / f"{name}.trace.jsonl"), "--preset", "ambient", "--out", str(target), "--plot"]  # fmt: skip
    done = interrupt(cmd, writing)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "interrupted (SIGINT); nothing was written; earlier files are untouched\n"
    assert not done.survivors, f"still running after the command ended: {done.survivors}"
    assert not list(target.glob(".*")), "a partial file was left"
    interrupted = seen[0][1:].rsplit(".", 2)[0]  # .NAME.RANDOM.part
    for path in target.iterdir():  # whatever was written before the interrupt is whole
        if path.suffix == ".wav":
            soundfile.read(path)
    print(f"interrupted while writing {interrupted}; written before: {sorted(p.name for p in target.iterdir())}")


def test_render_help_reads_well():
    done = sonify("render", "--help")
    assert done.returncode == 0
    for flag in (
        "--read",
        "--trace",
        "--model",
        "--backend",
        "--preset",
        "--temp",
        "--top-p",
        "--min-p",
        "--top-k",
        "--seed",
        "--tokens",
        "--duration",
        "--plot",
        "--format",
    ):
        assert flag in done.stdout
