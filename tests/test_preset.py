"""Presets: the default defines and documents every key, overlays merge, bad values are named."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib

import pytest

from sonify.errors import SonifyError
from sonify.music import preset as preset_module
from sonify.music.preset import BUILTIN_PRESETS, Preset, load_preset, preset_names
from sonify.music.toml_lines import key_lines


def leaf_paths(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for f in dataclasses.fields(cls):
        if "check" not in f.metadata:
            continue
        kind = preset_module.get_type_hints(cls)[f.name]
        out += leaf_paths(kind, prefix + (f.name,)) if dataclasses.is_dataclass(kind) else [prefix + (f.name,)]
    return out


def test_default_defines_and_documents_every_key():
    source = (BUILTIN_PRESETS / "default.toml").read_text()
    lines = source.splitlines()
    written = key_lines(source)
    for path in leaf_paths(Preset):
        assert path in written, f"default.toml lacks {'.'.join(path)}"
        line = lines[written[path] - 1]
        previous = lines[written[path] - 2] if written[path] > 1 else ""
        table_line = lines[written[path[:-1]] - 1] if path[:-1] in written else ""
        documented = "#" in line or previous.lstrip().startswith("#") or "#" in table_line or path[-1] in {"name", "description"}
        common = path[:2] == ("voices",) + path[1:2] and path[-1] in {f.name for f in dataclasses.fields(preset_module.Voice)}
        assert documented or common, f"default.toml does not document {'.'.join(path)}"


def test_at_least_six_named_presets_load_and_describe_themselves():
    names = preset_names()
    assert names[0] == "default" and len(names) >= 7
    for name in names:
        p = load_preset(name)
        assert p.name == name and p.description
        data = tomllib.loads((BUILTIN_PRESETS / f"{name}.toml").read_text())
        assert data["name"] == name


def test_an_overlay_changes_only_what_it_names(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[music]\ntempo = 140.0\n[voices.melody]\nleap = { signal = "entropy", range = [0, 4] }\n')
    mine, default = load_preset(str(path)), load_preset("default")
    assert mine.music.tempo == 140.0 and mine.music.key == default.music.key
    assert mine.voices.melody.leap.signal == "entropy" and mine.voices.melody.leap.range == (0.0, 4.0)
    assert mine.voices.melody.leap.limits == ("5%", "95%")  # a mapping table's own defaults
    assert mine.voices.melody.leap.window is None and mine.voices.melody.leap.curve == 1.0  # calibrated, straight
    assert mine.voices.melody.velocity == default.voices.melody.velocity
    assert mine.voices.harmony == default.voices.harmony


BAD = [
    ("[voices.melody]\nvelocity = 300\n", 2, "voices.melody.velocity", "out of range; allowed 1..127"),
    ('[music]\ntempo = "fast"\n', 2, "music.tempo", "not a number; allowed 20..400 bpm"),
    ('[music]\n\nscale = "blues"\n', 3, "music.scale", "use one of major, minor"),
    ("[voices.melody]\nvelocty = 3\n", 2, "voices.melody.velocty", "unknown key; allowed keys here: channel"),
    ("[voices.bass]\nenabled = true\n", 1, "voices.bass", "unknown key; allowed keys here: drone, ghosts"),
    ("[voices.ghosts]\ncount = 2.5\n", 2, "voices.ghosts.count", "not an integer; allowed 0..8"),
    (
        '[voices.melody]\nleap = { signal = "surprise", range = [0, 6] }\n',
        2,
        "voices.melody.leap.signal",
        "use one of surprisal",
    ),
    ('[voices.melody]\nleap = { signal = "entropy", range = [0, 30] }\n', 2, "voices.melody.leap.range", "allowed 0..12 scale steps"),
    (
        '[voices.melody]\nleap = { signal = "entropy", range = [0, 6], limits = ["5", "95%"] }\n',
        2,
        "voices.melody.leap.limits",
        "not a percentile",
    ),
    ('[voices.melody]\nvelocity = { signal = "entropy" }\n', 2, "voices.melody.velocity", "needs signal and range"),
    ('[voices.melody]\nleap = { signal = "entropy", range = [0, 6], window = 1 }\n', 2, "voices.melody.leap.window", "allowed 2..100000 words"),
    ('[voices.melody]\nleap = { signal = "entropy", range = [0, 6], fallback = "loud" }\n', 2, "voices.melody.leap.fallback", "rest"),
    ("[voices.melody]\nregister = [80, 60]\n", 2, "voices.melody.register", "does not rise"),
    ("[voices.layers]\nlevel = 5\n", 2, "voices.layers.level", "not a table"),
    ('[timing]\nword_length = "long"\n', 2, "timing.word_length", "use one of even, letters"),
    ("[timing]\nwords_per_minute = 500\n", 2, "timing.words_per_minute", "allowed 60..240"),
    ("[form]\nsection_keys = []\n", 2, "form.section_keys", "not a list of 1 to 16 integers"),
    ("[voices.melody]\nenabled = 1\n", 2, "voices.melody.enabled", "not true or false"),
    ('[voices.melody]\ngate = { signal = "surprisal" }\n', 2, "voices.melody.gate", "is not a gate"),
    ("[music]\ntime_signature = [4]\n", 2, "music.time_signature", "not a list of two values"),
    ("[synth]\nloudness = -3.0\n", 2, "synth.loudness", "allowed -40..-6 LUFS"),
    ('[controls]\ncc200 = "hold"\n', 2, "controls.cc200", "cc0..cc127 (control change) or note0..note127"),
    ('[controls]\n\ncc3 = "tempreature"\n', 3, "controls.cc3", "is no parameter; use one of temperature, top_p, hold, mute.melody"),
    ('[controls]\nnote60 = "mute.bass"\n', 2, "controls.note60", "is no parameter"),
    ('[controls]\ncc3 = { param = "temperature", range = [0, 9] }\n', 2, "controls.cc3.range", "not two numbers in 0..2"),
    ('[controls]\ncc3 = { param = "hold", range = [0, 1] }\n', 2, "controls.cc3.range", "hold is on or off"),
    ('[controls]\ncc3 = { param = "gain.drone", curve = 2 }\n', 2, "controls.cc3.curve", "allowed keys here: param, range"),
    ('[controls]\nnote60 = "preset"\n', 2, "controls.note60", 'note<N> = { param = "preset", preset = "pulse" }: name the preset'),
    ('[controls]\ncc3 = { param = "preset", preset = "pulse" }\n', 2, "controls.cc3.preset", "allowed keys here: param, presets"),
    ('[controls]\ncc3 = { param = "tempo", range = [0.1, 2] }\n', 2, "controls.cc3.range", "not two numbers in 0.5..2x"),
]


@pytest.mark.parametrize("text,line,key,message", BAD)
def test_bad_values_name_file_line_key_and_range(tmp_path, text, line, key, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SonifyError) as info:
        load_preset(str(path))
    assert str(info.value).startswith(f"{path}:{line}: {key}: "), str(info.value)
    assert message in str(info.value)


def test_controls_overlay_the_default_and_span_their_range(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        '[controls]\ncc2 = { param = "gain.drone", range = [-20, 0] }\nnote36 = "mute.melody"\n'
        'note60 = { param = "preset", preset = "pulse" }\ncc22 = { param = "preset", presets = ["default", "pulse", "ambient"] }\n'
    )
    bindings = {(b.kind, b.number): b for b in load_preset(str(path)).controls}
    assert bindings[("cc", 1)].param == "temperature" and bindings[("cc", 1)].value(127) == 2.0  # the default's
    assert bindings[("cc", 2)].param == "gain.drone" and bindings[("cc", 2)].range == (-20.0, 0.0)  # replaced whole
    assert bindings[("cc", 2)].value(0) == -20.0 and bindings[("note", 36)].switch
    assert bindings[("cc", 64)].value(63) == 0.0 and bindings[("cc", 64)].value(64) == 1.0
    assert bindings[("note", 60)].presets == ("pulse",)  # a note names one preset, a knob steps through a list
    assert [bindings[("cc", 22)].preset(v) for v in (0, 42, 43, 85, 86, 127)] == ["default", "default", "pulse", "pulse", "ambient", "ambient"]


def test_unknown_preset_lists_the_names():
    with pytest.raises(SonifyError, match=r"unknown preset 'nope'; available: default, ambient"):
        load_preset("nope")


def test_broken_toml_is_one_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[music\ntempo = 3\n")
    with pytest.raises(SonifyError, match=r"not valid TOML: .*line 1"):
        load_preset(str(path))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sonify", *args], capture_output=True, text=True, timeout=60)


def test_presets_command_lists_each_with_one_line():
    out = run_cli("presets")
    assert out.returncode == 0
    rows = out.stdout.strip().splitlines()
    assert [r.split()[0] for r in rows] == preset_names()
    assert all(len(r.split(None, 1)[1]) > 20 for r in rows)


def test_explain_names_each_signal_and_parameter():
    out = run_cli("explain", "default")
    assert out.returncode == 0
    text = out.stdout
    for phrase in (
        "leap      ← surprisal",
        "velocity  ← entropy",
        "tension   ← entropy",
        "spread    ← attention_reach",
        "level     ← layer_update",
        "level     ← residual_norm",
        "distance  ← alt_gap",
        "D dorian, 96 bpm",
        "140 words a minute",
        "a blank line: every voice releases",
    ):
        assert phrase in text
    # Limits in the signal's own units, read from the model's calibration.
    assert re.search(r"\d+(\.\d+)? nats \(2%\) to \d+(\.\d+)? nats \(99\.5%\) → 0\.\.6 steps", text)


def test_explain_bad_preset_is_one_line_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[voices.melody]\nvelocity = 300\n")
    out = run_cli("explain", str(path))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
