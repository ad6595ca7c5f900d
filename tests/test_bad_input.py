"""Every mistake a user can make, and every fault a machine can throw at a command: one line
on stderr, the right exit status, no traceback, and the output folder exactly as it was
(or, for a success, with exactly the new files).

The table runs as real processes, forked from one Python that imported sonify once
(``cli_batch.py``), so ~70 command lines cost seconds. Signals, a closed stdin and a full
disk are tested on real ``python -m sonify`` processes: a real SIGTERM and SIGHUP, a real
tmpfs that runs out of space (or, where mounting is not allowed, a real RLIMIT_FSIZE).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from interrupt import default_sigint

HERE = Path(__file__).parent
ROOT = HERE.parent


@dataclass
class Case:
    """One command line: what it is given, and what it must do.

    ``files`` are put in the case's folder first (``{name: bytes}``); ``code`` and ``message``
    are the expected status and a part of the one stderr line; ``new`` the files a success adds
    (``None``: the folder must end exactly as it began)."""

    id: str
    argv: list[str]
    code: int = 2
    message: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    stdin: str | None = None
    new: tuple[str, ...] | None = None
    changed: tuple[str, ...] = ()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) and a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def wav_bytes(frames: int, rate: int = 16000, silent: bool = False) -> bytes:
    """A mono 16-bit WAV of ``frames`` samples of a quiet tone, or of silence (stdlib ``wave``)."""
    import io
    import math

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", 0 if silent else int(3000 * math.sin(k / 8))) for k in range(frames)))
    return buffer.getvalue()


def deep_trace(depth: int) -> bytes:
    header = json.dumps({"format": "sonify-trace", "version": 1, "model": "x"})
    return (header + "\n" + "[" * depth + "]" * depth + "\n").encode()


def shallow_bad_trace() -> bytes:
    header = json.dumps({"format": "sonify-trace", "version": 1, "model": "x"})
    return (header + "\n" + json.dumps({"index": {"nested": [1, 2]}, "token_id": 1}) + "\n").encode()


def lying_checkpoint(source: Path, target: Path) -> Path:
    """A copy of ``source`` whose safetensors header gives a tensor offsets that run backwards."""
    shutil.copytree(source, target)
    path = target / "model.safetensors"
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    name = next(k for k in header if k != "__metadata__")
    start, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [end, start]
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (length - len(raw)) if len(raw) <= length else b""
    assert len(raw) == length
    path.write_bytes(data[:8] + raw + data[8 + length :])
    return target


def config_variant(source: Path, target: Path, **changes) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **changes}))
    return target


RENDER_FILES = ("x.wav", "x.mid", "x.srt", "x.vtt", "x.lrc", "x.json", "x.trace.jsonl")
OLD = {name: b"an earlier render\n" for name in RENDER_FILES}


def cases(model: str, broken: dict[str, str], trace: str) -> list[Case]:
    """The table. ``model`` is a tiny test checkpoint; ``broken`` maps a fault to a broken copy."""
    m = ["--model", model]
    quick = ["--tokens", "3", "--quiet", *m]
    inter = ["interlude", "The sea", "--duration", "6", *m]
    return [
        # Numbers: finite and in range, checked by the shared option types.
        Case("duck-nan", [*inter, "--duck", "nan"], message="--duck has to be in the [0, 60] interval (dB), but is nan"),
        Case("duck-negative", [*inter, "--duck", "-1000"], message="--duck has to be in the [0, 60] interval"),
        Case("fade-in-nan", [*inter, "--fade-in", "nan"], message="--fade-in has to be in the [0, 600] interval"),
        Case("fade-out-inf", [*inter, "--fade-out", "inf"], message="--fade-out has to be"),
        Case("lufs-high", [*inter, "--lufs", "-3"], message="--lufs has to be in the [-40, -6] interval (LUFS), but is -3"),
        Case("wpm-low", [*inter, "--wpm", "5"], message="--wpm has to be an integer in 80..450"),
        Case("interlude-duration-inf", ["interlude", "--duration", "inf"], message="--duration has to be a positive number"),
        Case("seed-negative", ["render", "--seed", "-1", *quick], message="--seed has to be an integer in 0..9223372036854775807"),
        Case("seed-huge", ["render", "--seed", str(2**64), *quick], message="--seed has to be an integer"),
        Case("seed-word", ["trace", "--seed", "one", *quick], message="--seed has to be an integer in 0..9223372036854775807, but is 'one'"),
        Case("temp-nan", ["render", "--temp", "nan", *quick], message="temperature has to be >= 0"),
        Case("temp-negative", ["trace", "--temp", "-1", *quick], message="temperature has to be >= 0"),
        Case("top-p", ["trace", "--top-p", "2", *quick], message="top_p has to be in the (0, 1] interval"),
        Case("min-p", ["trace", "--min-p", "1.5", *quick], message="min_p has to be in the [0, 1] interval"),
        Case("top-k", ["trace", "--top-k", "-1", *quick], message="top_k has to be at least 0"),
        Case("penalty-inf", ["trace", "--repetition-penalty", "inf", *quick], message="repetition_penalty has to be"),
        Case("tokens-zero", ["trace", "--tokens", "0", *m], message="--tokens has to be at least 1"),
        Case("render-tokens-zero", ["render", "--tokens", "0", *m], message="--tokens has to be at least 1"),
        Case("duration-zero", ["render", "--duration", "0", *m], message="--duration has to be a positive number of seconds"),
        Case("duration-nan", ["render", "--duration", "nan", *m], message="--duration has to be a positive number of seconds, but is nan"),
        Case("threads-zero", ["render", "--threads", "0", *quick], message="--threads has to be an integer in 1..1024"),
        Case("window-small", ["render", "--window", "3", *quick], message="--window has to be an integer in 8..1000000"),
        Case("alternatives-zero", ["trace", "--alternatives", "0", *quick], message="--alternatives has to be an integer in 1..100"),
        Case("rate", ["render", "--rate", "22050", *quick], message="invalid choice: 22050"),
        Case("block-zero", ["play", "--block", "0", "--midi-out"], message="--block has to be an integer in 16..8192"),
        Case("block-huge", ["play", "--block", "99999999", "--midi-out"], message="--block has to be an integer in 16..8192"),
        Case("block-negative", ["play", "--block", "-5", "--midi-out"], message="--block has to be an integer in 16..8192"),
        Case("latency-zero", ["play", "--latency", "0", "--midi-out"], message="--latency has to be in the [0.02, 10] interval"),
        Case("unknown-flag", ["render", "--bogus"], message="unrecognized arguments: --bogus"),
        # Names: a bare file name, never a path.
        Case("name-parent", ["render", "--name", "../x", *quick], message="--name has to be a bare file name without a folder"),
        Case("name-absolute", ["render", "--name", "/tmp/x", *quick], message="--name has to be a bare file name"),
        Case("name-folder", ["score", trace, "--name", "a/b"], message="--name has to be a bare file name"),
        Case("name-dots", ["interlude", "--duration", "5", "--name", "..", *m], message="--name has to be a bare file name"),
        Case("page-name", ["page", trace, "--name", "../p"], message="--name has to be a bare file name"),
        # The earlier bad-input tables (tests/test_cli.py, tests/test_render.py).
        Case("no-model", ["trace", "--model", "/no/such/model"], message="model folder /no/such/model does not exist"),
        Case("no-text", ["trace", "--read", "/no/such.txt", *m], message="text file /no/such.txt does not exist"),
        Case("prompt-and-read", ["trace", "hello", "--read", "-", *m], message="either a prompt or --read FILE, not both"),
        Case("backend", ["trace", "--backend", "cuda", *m], message="backend 'cuda' is not available"),
        Case("out-missing", ["trace", "--out", "/no/such/dir/t.jsonl", *m], message="output folder /no/such/dir does not exist"),
        Case("latin1", ["trace", "--read", "latin1.txt", *m], files={"latin1.txt": "café".encode("latin-1")},
             message="is not UTF-8 text (byte 0xe9 at offset 3)"),  # fmt: skip
        Case("blank", ["trace", "--read", "blank.txt", *m], files={"blank.txt": b"  \n"}, message="holds no text to read"),
        Case("preset", ["render", "--preset", "nope", *quick], message="unknown preset 'nope'"),
        Case("tokens-and-duration", ["render", "--tokens", "5", "--duration", "3", *m], message="give either --tokens or --duration"),
        Case("render-two-sources", ["render", "hello", "--read", "x.txt", *m], message="give either a prompt, --read FILE or --trace FILE"),
        Case("score-missing", ["score", "missing.trace.jsonl"], message="trace file missing.trace.jsonl does not exist"),
        Case("soundfont", ["render", "--soundfont", "none.sf2", *quick], message="SoundFont none.sf2 does not exist"),
        Case("out-is-file", ["render", *quick, "--out", "file"], files={"file": b"x"}, message="is a file; choose another --out"),
        Case("out-proc", ["render", *quick, "--out", "/proc/sonify"], message="cannot create output folder /proc/sonify"),
        # Files that lie.
        Case("voice-garbage", [*inter[:1], "--duration", "6", "--voice-file", "v.wav", "--transcript", "t.txt", *m],
             files={"v.wav": b"RIFF\x00\x00\x00\x00WAVEjunk" * 4, "t.txt": b"The sea"}, message="cannot read the voice file v.wav"),  # fmt: skip
        Case("voice-empty", [*inter[:1], "--duration", "6", "--voice-file", "v.wav", "--transcript", "t.txt", *m],
             files={"v.wav": wav_bytes(0), "t.txt": b"The sea"}, message="holds no samples"),  # fmt: skip
        Case("voice-silent", [*inter[:1], "--duration", "6", "--voice-file", "v.wav", "--transcript", "t.txt", *m],
             files={"v.wav": wav_bytes(1600, silent=True), "t.txt": b"The sea"}, message="v.wav holds no audible voice"),  # fmt: skip
        Case("trace-deep", ["score", "deep.trace.jsonl", "--out", "o"], files={"deep.trace.jsonl": deep_trace(100_000)},
             message="deep.trace.jsonl:2 is not a valid frame (nested too deeply)"),  # fmt: skip
        Case("trace-nested", ["score", "bad.trace.jsonl", "--out", "o"], files={"bad.trace.jsonl": shallow_bad_trace()},
             message="bad.trace.jsonl:2 is not a valid frame"),  # fmt: skip
        Case("trace-deep-header", ["score", "h.trace.jsonl"], files={"h.trace.jsonl": b"[" * 100_000 + b"]" * 100_000 + b"\n"},
             message="h.trace.jsonl:1 is not JSON"),  # fmt: skip
        Case("safetensors-offsets", ["trace", "hi", "--tokens", "2", "--model", broken["offsets"]],
             message="has a malformed header entry"),  # fmt: skip
        Case("config-heads-zero", ["trace", "hi", "--tokens", "2", "--model", broken["heads"]],
             message="'num_attention_heads' is 0; it has to be a whole number in 1..10000000"),  # fmt: skip
        Case("config-eps-negative", ["trace", "hi", "--tokens", "2", "--model", broken["eps"]], message="'rms_norm_eps' is -1"),
        Case("config-eos-word", ["trace", "hi", "--tokens", "2", "--model", broken["eos"]], message="'eos_token_id' is 'end'"),
        Case("config-eos-beyond", ["trace", "hi", "--tokens", "2", "--model", broken["beyond"]],
             message="token id 999999 is beyond the vocabulary"),  # fmt: skip
        # No silent overwrite: the name the user gave, or a refusal, unless --force.
        Case("render-exists", ["render", "The sea", *quick, "--name", "x", "--out", "."], files=OLD,
             message="x.wav exists (and 6 more of that name); give --force"),  # fmt: skip
        Case("render-one-exists", ["render", "The sea", *quick, "--out", "."], files={"the-sea.json": b"{}"},
             message="the-sea.json exists; give --force"),  # fmt: skip
        Case("render-force", ["render", "The sea", *quick, "--name", "x", "--out", ".", "--force"], files=OLD, code=0,
             new=(), changed=RENDER_FILES),  # fmt: skip
        Case("score-exists", ["score", trace, "--name", "x", "--out", "."], files=OLD, message="x.wav exists"),
        Case("trace-exists", ["trace", "The sea", *quick, "--out", "t.jsonl"], files={"t.jsonl": b"old"}, message="t.jsonl exists"),
        Case("trace-prompt-exists", ["trace", "The sea", *quick], files={"renders/the-sea.trace.jsonl": b"old"},
             message="renders/the-sea.trace.jsonl exists; give --force"),  # fmt: skip
        Case("interlude-exists", [*inter, "--name", "x", "--out", "."], files={"x.trace.jsonl": b"old"}, message="x.trace.jsonl exists"),
        Case("page-exists", ["page", trace, "--name", "p", "--out", "."], files={"p.html": b"old"},
             message="p.html exists; give --force to replace it, or another --name or --out"),  # fmt: skip
        Case("page-force", ["page", trace, "--name", "p", "--out", ".", "--force"], files={"p.html": b"old"}, code=0,
             new=(), changed=("p.html",)),  # fmt: skip
        # Refused before the performance (and before any MIDI port is opened): it cannot be played again.
        Case("play-record-exists", ["play", "--midi-out", "--record", "take.mid", *quick], files={"take.mid": b"old"},
             message="take.mid exists; give --force to replace it, or another file name"),  # fmt: skip
        Case("play-score-out-exists", ["play", "--trace", trace, "--midi-out", "--score-out", "s.json", "--quiet"],
             files={"s.json": b"old"}, message="s.json exists; give --force"),  # fmt: skip
        # Size: refused before any work when the piece would outgrow --max-duration (default 3 h).
        Case("huge-text", ["render", "--read", "big.txt", *m], files={"big.txt": b"word " * 30_000},
             message="this piece (default preset, 140 words a minute) would last about 3 h 34 min, more than the limit of 3 h 00 min"),  # fmt: skip
        Case("max-duration", ["render", "--read", "t.txt", "--max-duration", "10", *m], files={"t.txt": b"word " * 30},
             message="would last about 0 min 13 s, more than the limit of 0 min 10 s"),  # fmt: skip
        Case("huge-tokens", ["render", "--tokens", "100000", *m], message="would last about 8 h 55 min"),
        Case("huge-duration", ["render", "--duration", "20000", *m], message="--duration would last about 5 h 33 min"),
        Case("interlude-huge", ["interlude", "--duration", "20000", *m], message="--duration would last about 5 h 33 min"),
        Case("max-duration-nan", ["render", "--max-duration", "nan", *m], message="--max-duration has to be"),
        # Successes that used to be errors or to overwrite.
        Case("trace-name-from-prompt", ["trace", "The sea", *quick], code=0, new=("renders/the-sea.trace.jsonl",)),
        Case("trace-out-folder", ["trace", "The sea", *quick, "--out", "d"], files={"d/keep": b"k"}, code=0,
             new=("d/the-sea.trace.jsonl",)),  # fmt: skip
        Case("trace-force", ["trace", "The sea", *quick, "--out", "t.jsonl", "--force"], files={"t.jsonl": b"old"}, code=0,
             new=(), changed=("t.jsonl",)),  # fmt: skip
    ]


@pytest.fixture(scope="module")
def table(checkpoint_dir, tmp_path_factory):
    """Run every case once (one batch of forked processes); yields {id: (case, result, before, after, folder)}."""
    root = tmp_path_factory.mktemp("bad")
    model = checkpoint_dir("llama")
    broken = {
        "offsets": lying_checkpoint(model, root / "m-offsets"),
        "heads": config_variant(model, root / "m-heads", num_attention_heads=0),
        "eps": config_variant(model, root / "m-eps", rms_norm_eps=-1),
        "eos": config_variant(model, root / "m-eos", eos_token_id="end"),
        "beyond": config_variant(model, root / "m-beyond", eos_token_id=999999),
    }
    made = subprocess.run(
        [sys.executable, "-m", "sonify", "trace", "The sea is calm", "--tokens", "4", "--model", str(model), "--out", str(root / "t.trace.jsonl")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    table_cases = cases(str(model), {k: str(v) for k, v in broken.items()}, str(root / "t.trace.jsonl"))
    ids = [c.id for c in table_cases]
    assert len(ids) == len(set(ids))
    folders, before = {}, {}
    for case in table_cases:
        folder = root / "cases" / case.id / "cwd"
        folder.mkdir(parents=True)
        for name, data in case.files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        folders[case.id], before[case.id] = folder, snapshot(folder)
    jobs = [{"argv": c.argv, "cwd": str(folders[c.id]), "stdin": c.stdin} for c in table_cases]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(HERE / "cli_batch.py")], input=json.dumps(jobs), capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    print(f"{len(jobs)} cases in {time.monotonic() - started:.1f} s")
    return {
        c.id: (c, r, before[c.id], snapshot(folders[c.id]), folders[c.id]) for c, r in zip(table_cases, results, strict=True)
    }


CASE_IDS = [c.id for c in cases("M", {k: "B" for k in ("offsets", "heads", "eps", "eos", "beyond")}, "T")]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_case(table, case_id):
    case, result, before, after, folder = table[case_id]
    stderr = result["stderr"]
    assert "Traceback" not in stderr, stderr
    assert result["code"] == case.code, stderr
    if case.code != 0:
        assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
        assert case.message in stderr, stderr
        assert after == before, "the folder changed"
        return
    added = sorted(set(after) - set(before))
    assert added == sorted(case.new or ()), added
    for name in case.changed:
        assert after[name] != before[name], f"{name} was not replaced"
    for name in set(before) - set(case.changed):
        assert after.get(name) == before[name], f"{name} changed"


def sonify_process(*args, cwd=None, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "sonify", *map(str, args)]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def earlier_set(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in OLD.items():
        (folder / name).write_bytes(data)
    return snapshot(folder)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_render_leaves_the_earlier_files(checkpoint_dir, tmp_path, sig):
    """A real SIGTERM or SIGHUP to a real render that replaces an earlier set (--force), while
    it runs the model or the synthesizer: nothing new appears and the earlier set is untouched."""
    folder = tmp_path / "out"
    before = earlier_set(folder)
    proc = sonify_process("render", "The sea", "--duration", "600", "--model", checkpoint_dir("llama"), "--name", "x",
                          "--out", folder, "--force", "--quiet")  # fmt: skip
    time.sleep(3)
    assert proc.poll() is None, "the render ended before the signal"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert f"terminated ({signal.Signals(sig).name}); nothing was written; earlier files are untouched" in stderr
    assert snapshot(folder) == before


def test_sigterm_while_the_files_are_written(checkpoint_dir, tmp_path):
    """SIGTERM as soon as the first temporary file of a long piece appears: the set is either
    all the earlier files or all the new ones (if the commit won the race), never a mix, and no
    temporary file is left."""
    folder = tmp_path / "out"
    before = earlier_set(folder)
    proc = sonify_process("render", "The sea", "--duration", "240", "--model", checkpoint_dir("llama"), "--name", "x",
                          "--out", folder, "--force", "--quiet")  # fmt: skip
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and not leftovers(folder):
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    after = snapshot(folder)
    print(f"SIGTERM at the first temporary file: exit {proc.returncode}, {'earlier set kept' if after == before else 'new set'}")
    assert leftovers(folder) == []
    if after == before:
        assert proc.returncode == 143 and "nothing was written; earlier files are untouched" in stderr, stderr
    else:  # the signal came after the renames: every file is new
        assert sorted(after) == sorted(before) and all(after[n] != before[n] for n in before), after


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_audio_streams_into_its_file(checkpoint_dir, tmp_path, sig):
    """A real signal while the audio is being written, block by block, into its temporary
    file (already more than 1 MB of it): the command stops soon, says so in one line, the
    temporary file is gone and the earlier set is untouched."""
    folder = tmp_path / "out"
    before = earlier_set(folder)
    proc = sonify_process("render", "The sea", "--duration", "150", "--model", checkpoint_dir("llama"), "--name", "x",
                          "--out", folder, "--force", "--quiet", preexec_fn=default_sigint)  # fmt: skip
    deadline = time.monotonic() + 240

    def written() -> int:
        sizes = [p.stat().st_size for p in folder.glob(".x.wav.*.part") if p.exists()]
        return max(sizes, default=0)

    while proc.poll() is None and time.monotonic() < deadline and written() < 1_000_000:
        time.sleep(0.002)
    assert proc.poll() is None and written() >= 1_000_000, "the audio file was not being written"
    sent = time.monotonic()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    latency = time.monotonic() - sent
    print(f"{signal.Signals(sig).name} while the audio streams into its file: exit {proc.returncode} {latency:.2f} s later")
    assert proc.returncode == 128 + sig, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and "nothing was written" in stderr, stderr
    assert snapshot(folder) == before and leftovers(folder) == []
    assert latency < 20.0  # a block is a few hundred ms of work even on a loaded machine; the whole piece took far longer


def test_closed_stdin_is_one_line(checkpoint_dir, tmp_path):
    proc = sonify_process("trace", "--read", "-", "--model", checkpoint_dir("llama"), "--out", tmp_path / "t.jsonl",
                          cwd=tmp_path, stdin=None, preexec_fn=lambda: os.close(0))  # fmt: skip
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and stderr.count("\n") == 1, stderr
    assert "standard input is closed" in stderr
    assert list(tmp_path.iterdir()) == []


def small_disk(folder: Path) -> str:
    """A real 256 KiB tmpfs at ``folder`` where mounting is allowed (root), else ''."""
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return ""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True)
    return "tmpfs" if done.returncode == 0 else ""


def test_a_full_disk_is_one_line_and_leaves_the_earlier_files(checkpoint_dir, tmp_path):
    """A real full disk: a 256 KiB tmpfs (ENOSPC) where this runs as root, else a real file
    size limit (RLIMIT_FSIZE: EFBIG). The earlier set stays and no temporary file is left."""
    import resource

    folder = tmp_path / "disk"
    kind = small_disk(folder)
    try:
        before = earlier_set(folder)
        limit = None if kind else (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024)))
        proc = sonify_process("render", "The sea", "--duration", "20", "--model", checkpoint_dir("llama"), "--name", "x",
                              "--out", folder, "--force", "--quiet", preexec_fn=limit)  # fmt: skip
        _, stderr = proc.communicate(timeout=300)
        print(f"full disk by {kind or 'RLIMIT_FSIZE'}: {stderr.strip()}")
        assert proc.returncode == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
        reason = "No space left on device" if kind else "File too large"
        assert reason in stderr and "nothing was written (earlier files are untouched)" in stderr, stderr
        assert snapshot(folder) == before and leftovers(folder) == []
    finally:
        if kind:
            subprocess.run(["umount", str(folder)], check=True)


def poisoned_checkpoint(source: Path, target: Path, token_id: int) -> Path:
    """A copy of ``source`` whose embedding row for ``token_id`` is NaN: the model's numbers
    break exactly when that token is fed."""
    import numpy as np

    from sonify.model.safetensors_io import SafetensorsFile

    shutil.copytree(source, target)
    path = target / "model.safetensors"
    tensors = SafetensorsFile(path)
    dtype, shape, start, _ = tensors._entries["model.embed_tokens.weight"]
    assert dtype == "F32"
    with open(path, "r+b") as f:
        f.seek(tensors._data_start + start + token_id * shape[1] * 4)
        f.write(np.full(shape[1], np.nan, dtype="<f4").tobytes())
    return target


def test_nan_in_the_model_stops_at_the_token(checkpoint_dir, tmp_path):
    """NaN in the activations stops the run with one line naming the token; nothing written."""
    from sonify import SonifyError, load_model
    from sonify.model.engine import Engine

    text = "Shall I compare thee to a summer's day?"
    ids = load_model(checkpoint_dir("llama")).tokenizer.encode(text)
    poison = ids[5]
    first = ids.index(poison)
    folder = poisoned_checkpoint(checkpoint_dir("llama"), tmp_path / "nan", poison)
    engine = Engine(load_model(folder), chunk=1)  # one token a call: the first bad frame is exact
    frames = []
    with pytest.raises(SonifyError) as info:
        frames.extend(engine.read(text))
    # Frame k is predicted after feeding token k-1: the poisoned token breaks frame first + 1.
    assert f"at token {first + 1} are not finite" in str(info.value)
    assert len(frames) == first + 1
    (tmp_path / "t.txt").write_text(text)
    proc = sonify_process("trace", "--read", "t.txt", "--model", folder, "--out", "t.jsonl", cwd=tmp_path)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and stderr.count("\n") == 1 and "are not finite (NaN or infinity)" in stderr, stderr
    assert not (tmp_path / "t.jsonl").exists()


def test_a_rename_that_fails_part_way_puts_back_what_it_replaced(tmp_path):
    """The commit renames one file after another; when one rename fails (here for real: the
    target name is a folder that is not empty), the files already renamed are put back."""
    from sonify import SonifyError
    from sonify.outputs.files import OutputSet

    (tmp_path / "a.txt").write_text("earlier a")
    (tmp_path / "b.txt").mkdir()
    (tmp_path / "b.txt" / "inside").write_text("keep")
    before = snapshot(tmp_path)
    with pytest.raises(SonifyError, match="cannot write .*b.txt.*nothing was written"):
        with OutputSet() as files:
            files.write(tmp_path / "a.txt", "new a")
            files.write(tmp_path / "c.txt", "new c")
            files.write(tmp_path / "b.txt", "new b")
    assert snapshot(tmp_path) == before


def test_a_signal_at_any_moment_of_staging_leaves_no_temporary_file(tmp_path):
    """Real SIGTERMs, sent by another thread at random moments, interrupt OutputSets while
    they stage and commit files: each interrupted set leaves no temporary file behind, even
    when the signal lands between the temporary file's creation and its registration."""
    import random
    import threading

    from sonify.outputs.files import OutputSet

    class Stop(Exception):
        pass

    armed = threading.Event()
    done = threading.Event()

    def on_signal(signum, frame) -> None:
        if armed.is_set():  # at most one exception per set, and only inside the try below
            armed.clear()
            raise Stop

    def sender(main: int, rng: random.Random) -> None:
        while not done.is_set():
            time.sleep(rng.uniform(0, 0.0004))
            signal.pthread_kill(main, signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_signal)
    thread = threading.Thread(target=sender, args=(threading.get_ident(), random.Random(7)), daemon=True)
    thread.start()
    interrupted = 0
    try:
        for i in range(1500):
            try:
                armed.set()
                with OutputSet() as files:
                    for name in ("a", "b", "c"):
                        files.stage(tmp_path / f"{name}{i % 3}.bin")
                armed.clear()
            except Stop:
                interrupted += 1
    finally:
        done.set()
        thread.join()
        signal.signal(signal.SIGTERM, previous)
    print(f"{interrupted} of 1500 sets interrupted")
    assert interrupted > 100, f"only {interrupted} sets were interrupted"
    assert sorted(p.name for p in tmp_path.glob(".*")) == []
