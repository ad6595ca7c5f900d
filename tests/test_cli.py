"""The command line, run as a user runs it: a real process, real files, real signals."""

import os
import subprocess
import sys
import time

import pytest
from interrupt import interrupt

from sonify import Trace


def sonify(*args, stdin=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sonify", *map(str, args)], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_trace_generate_and_read(checkpoint_dir, tmp_path):
    model = checkpoint_dir("llama")
    out = tmp_path / "gen.jsonl"
    done = sonify("trace", "Shall I", "--model", model, "--tokens", 12, "--seed", 3, "--temp", 1.0, "--out", out)
    assert done.returncode == 0, done.stderr
    trace = Trace.read(out)
    assert trace.header["seed"] == 3 and trace.header["prompt"] == "Shall I"
    assert trace.frames[0].mode == "read" and trace.frames[-1].mode == "generated"

    done = sonify("trace", "--read", "-", "--model", model, "--out", tmp_path / "read.jsonl", stdin="Rough winds do shake")
    assert done.returncode == 0, done.stderr
    assert Trace.read(tmp_path / "read.jsonl").text() == "Rough winds do shake"


def test_default_output_goes_to_renders(checkpoint_dir, tmp_path):
    (tmp_path / "poem.txt").write_text("Shall I compare thee to a summer's day?\n")
    done = sonify("trace", "--read", "poem.txt", "--model", checkpoint_dir("llama"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "renders" / "poem.trace.jsonl").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["trace", "--model", "/no/such/model"], "model folder /no/such/model does not exist"),
        (["trace", "--read", "/no/such.txt"], "text file /no/such.txt does not exist"),
        (["trace", "hello", "--read", "-"], "either a prompt or --read FILE, not both"),
        (["trace", "--tokens", "0"], "--tokens has to be at least 1"),
        (["trace", "--temp", "-1"], "temperature has to be >= 0"),
        (["trace", "--top-p", "2"], "top_p has to be in the (0, 1] interval"),
        (["trace", "--backend", "cuda"], "backend 'cuda' is not available"),
        (["trace", "--out", "/no/such/dir/t.jsonl"], "output folder /no/such/dir does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(checkpoint_dir, args, message):
    if "--model" not in args:
        args = [*args, "--model", checkpoint_dir("llama")]
    done = sonify(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert message in done.stderr


def test_non_utf8_and_empty_text(checkpoint_dir, tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "blank.txt").write_text("  \n")
    for name, message in [("latin1.txt", "is not UTF-8 text (byte 0xe9 at offset 3)"), ("blank.txt", "holds no text to read")]:
        done = sonify("trace", "--read", tmp_path / name, "--model", checkpoint_dir("llama"))
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1


def test_ctrl_c_leaves_no_partial_file(checkpoint_dir, tmp_path):
    """Ctrl-C mid-generation: exit 130, nothing written, no process left (the write itself
    interrupted: test_render's test_ctrl_c_during_a_write_leaves_no_partial_file_and_no_process)."""
    out = tmp_path / "long.jsonl"
    cmd = [sys.executable, "-m", "sonify", "trace", "--model", checkpoint_dir("llama"), "--tokens", "1000000", "--ignore-eos"]
    cmd += ["--out", str(out)]
    started = time.monotonic()
    done = interrupt(cmd, lambda: time.monotonic() - started > 4, timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "interrupted (SIGINT); nothing was written; earlier files are untouched\n"
    assert not done.survivors, f"still running after the command ended: {done.survivors}"
    assert os.listdir(tmp_path) == []


def test_models_lists_the_default():
    done = sonify("models")
    assert done.returncode == 0 and done.stdout.startswith("default")


def test_help_reads_well():
    done = sonify("trace", "--help")
    assert done.returncode == 0
    for flag in ("--read", "--model", "--temp", "--top-p", "--min-p", "--top-k", "--seed", "--tokens"):
        assert flag in done.stdout
