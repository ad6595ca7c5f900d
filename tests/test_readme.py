"""The README's shell examples run: every `sonify ...` or `python3 -m sonify ...` command in
its ```sh blocks, in the README's order, each in a folder of its own with a short poem.txt
and the files it names from the commands before it. Lengths are cut to keep each a few
seconds (`--tokens` at most 40, `--duration` at most 20 s); the rest runs as written.

Not run, with the reason (each reason must still match a command, so the list stays true):
`play` and `panic` need a sound card or a MIDI port and play in real time (tests/test_live.py
plays through a JACK server); `--server` needs an inference server (tests/test_remote.py
starts real ones); `--model` names a checkpoint that is not in the repository; `--voice-file`
needs a recording of the poem."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sonify import Trace

ROOT = Path(__file__).resolve().parents[1]
POEM = "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date.\n"
MAX_TOKENS, MAX_SECONDS = 40, 20

SKIPS = {
    "plays live (a sound card or MIDI port, real time)": lambda args: args[0] in ("play", "panic"),
    "needs an inference server": lambda args: "--server" in args,
    "names a checkpoint not in the repository": lambda args: "--model" in args,
    "needs a recording of the poem": lambda args: "--voice-file" in args,
}


def readme_commands() -> list[tuple[int, list[str], str | None]]:
    """(line, arguments after `sonify`, file piped to stdin) for each command in the ```sh blocks."""
    found, in_block = [], False
    for number, line in enumerate((ROOT / "README.md").read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_block = line.strip() == "```sh" if not in_block else False
            continue
        if not in_block:
            continue
        piped = None
        for part in re.split(r"\s&&\s", line):
            stages = [shlex.split(stage, comments=True) for stage in part.split(" | ")]
            if len(stages) == 2 and stages[0][:1] == ["cat"]:
                piped, stages = stages[0][1], stages[1:]
            words = stages[0] if len(stages) == 1 else []
            for prefix in (["sonify"], ["python3", "-m", "sonify"], ["python", "-m", "sonify"]):
                if words[: len(prefix)] == prefix and len(words) > len(prefix):
                    found.append((number, words[len(prefix) :], piped))
    return found


def shortened(args: list[str]) -> list[str]:
    """The command with its length cut to a few seconds' work."""
    out = list(args)
    for flag, most in (("--tokens", MAX_TOKENS), ("--duration", MAX_SECONDS)):
        if flag in out:
            i = out.index(flag) + 1
            out[i] = str(min(float(out[i]), most)).removesuffix(".0")
    if out[0] in ("render", "trace") and "--read" not in out and "--tokens" not in out and "--duration" not in out:
        out += ["--tokens", str(MAX_TOKENS)]
    return out


def test_the_readme_commands_are_found():
    commands = readme_commands()
    assert len(commands) >= 30
    firsts = {args[0] for _, args, _ in commands}
    assert {"render", "score", "page", "trace", "presets", "explain", "models", "interlude", "play", "panic"} <= firsts
    assert ["--help"] in [args for _, args, _ in commands]
    for reason, applies in SKIPS.items():
        assert any(applies(args) for _, args, _ in commands), f"no command is skipped because it {reason}"


def test_the_readme_shell_examples_run(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    made: dict[str, Path] = {}  # relative path -> a file an earlier command wrote
    ran = 0
    for n, (line, args, piped) in enumerate(readme_commands()):
        if any(applies(args) for applies in SKIPS.values()):
            continue
        if "--soundfont" in args and not Path(args[args.index("--soundfont") + 1]).is_file():
            if os.environ.get("CI") == "true":
                pytest.fail(f"README.md:{line}: {args[args.index('--soundfont') + 1]} is missing")
            continue
        folder = tmp_path / f"{n:02d}"
        folder.mkdir()
        (folder / "poem.txt").write_text(POEM, encoding="utf-8")
        for arg in args:
            if arg in made:
                # `page` reads what its render left beside the audio; others only the file named
                stem = Path(arg).name.split(".")[0]
                for name, path in made.items():
                    if name == arg or (args[0] == "page" and Path(name).name.split(".")[0] == stem and not name.endswith(".html")):
                        (folder / name).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(path, folder / name)
        before = {p for p in folder.rglob("*")}
        stdin = (folder / piped).read_text(encoding="utf-8") if piped else None
        command = [sys.executable, "-m", "sonify", *shortened(args)]
        done = subprocess.run(command, cwd=folder, env=env, input=stdin, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (
            f"README.md:{line}: {shlex.join(['sonify', *shortened(args)])} exited {done.returncode}:\n{done.stderr[-3000:]}"
        )
        for path in set(folder.rglob("*")) - before:
            if path.is_file():
                made[str(path.relative_to(folder))] = path
        ran += 1
    assert ran >= 18


def test_the_default_models_sample_is_what_the_command_writes(tmp_path):
    """The README quotes the start of what `sonify trace "Shall I compare thee" --tokens 120 --seed 3` writes."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = 'sonify trace "Shall I compare thee" --tokens 120 --seed 3'
    assert f"`{command}` writes:" in readme
    quoted = readme.split(f"`{command}` writes:", 1)[1].split("```\n", 2)[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    args = [*shlex.split(command)[1:], "--out", "sample.jsonl"]
    done = subprocess.run(
        [sys.executable, "-m", "sonify", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    trace = Trace.read(tmp_path / "sample.jsonl")
    assert len(quoted) > 200
    assert "".join(f.text for f in trace.frames).startswith(quoted.rstrip("\n"))
