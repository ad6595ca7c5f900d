"""The package as a user gets it: the sdist and the wheel built from this tree, the wheel
installed into a fresh virtual environment (no system site-packages, no editable install),
and the command run from a folder outside the repository, so that nothing is found by
accident in the working tree. Costs about a minute: most of it is pip installing the
dependencies into the new environment (from pip's cache after the first run)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("ambient", "choral", "default", "glitch", "midi-rig", "podcast", "pulse")
RENDER_SUFFIXES = (".wav", ".mid", ".srt", ".vtt", ".lrc", ".json", ".trace.jsonl")


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    return done


def _source_files() -> list[str]:
    """The files a clone of this tree holds: tracked, plus new ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True
    )
    return [name for name in listed.stdout.decode().split("\0") if name and os.path.lexists(ROOT / name)]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist and wheel built (with build isolation, as pip builds them) from a copy of the tree,
    so the build leaves nothing in the working tree."""
    try:
        import build  # noqa: F401
    except ImportError:
        pytest.fail("the `build` package is missing: pip install -e '.[test]'")
    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"
    for name in _source_files():
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_symlink():
            target.symlink_to(os.readlink(ROOT / name))
        else:
            target.write_bytes((ROOT / name).read_bytes())
    out = tmp / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(src)], cwd=tmp)
    return out


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed; its bin folder."""
    folder = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(folder)], cwd=folder)
    (wheel,) = dist.glob("sonify-*.whl")
    _pip_install(folder / "bin", str(wheel))
    return folder / "bin"


def _pip_install(bin_folder: Path, requirement: str) -> None:
    """pip installs ``requirement`` into the environment: this Python's pip, pointed at it
    (seeding each new environment with a pip of its own took 5 s)."""
    _run([sys.executable, "-m", "pip", "--python", str(bin_folder / "python"), "install", "-q", requirement], cwd=bin_folder)


@pytest.fixture()
def outside(tmp_path) -> Path:
    assert ROOT not in tmp_path.parents
    return tmp_path


def _package_data() -> set[str]:
    """Every file the package reads besides its code: what git holds under sonify/ that is not Python."""
    return {
        name for name in _source_files() if name.startswith("sonify/") and not name.endswith(".py") and "__pycache__" not in name
    }


def test_the_wheel_and_the_sdist_hold_every_data_file(dist):
    data = _package_data()
    assert {"sonify/music/presets/default.toml", "sonify/music/calibration/reference.txt"} <= data
    (wheel,) = dist.glob("sonify-*.whl")
    (sdist,) = dist.glob("sonify-*.tar.gz")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert not data - in_wheel, f"missing from the wheel: {sorted(data - in_wheel)}"
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert not data - in_sdist, f"missing from the sdist: {sorted(data - in_sdist)}"


def test_the_installed_package_is_the_wheel_and_reads_its_data(venv, outside):
    script = (
        "import sonify, importlib.resources as r;"
        "from sonify.music.calibration import reference_text;"
        "from sonify.model.checkpoint import DEFAULT_MODEL_DIR;"
        "print(sonify.__file__); print(len(reference_text()));"
        "print((DEFAULT_MODEL_DIR / 'model.safetensors').stat().st_size)"
    )
    where, chars, weights = _run([str(venv / "python"), "-c", script], cwd=outside).stdout.split()
    assert Path(where).is_relative_to(venv.parent) and not Path(where).is_relative_to(ROOT)
    assert int(chars) > 1000 and int(weights) > 1_000_000


def test_presets_are_listed(venv, outside):
    listed = _run([str(venv / "sonify"), "presets"], cwd=outside).stdout
    lines = [line for line in listed.splitlines() if line.strip()]
    assert len(lines) >= len(PRESETS)
    for name in PRESETS:
        assert any(line.split()[0] == name for line in lines), f"{name} not in:\n{listed}"


def test_render_then_score_the_trace_again(venv, outside):
    _run([str(venv / "sonify"), "render", "The sea", "--tokens", "40"], cwd=outside)
    written = outside / "renders"
    for suffix in RENDER_SUFFIXES:
        assert (written / f"the-sea{suffix}").stat().st_size > 0, suffix
    _run([str(venv / "sonify"), "score", "renders/the-sea.trace.jsonl", "--out", "again"], cwd=outside)
    # the same trace and preset give the same files
    for suffix in (".wav", ".mid", ".json"):
        assert (outside / "again" / f"the-sea{suffix}").read_bytes() == (written / f"the-sea{suffix}").read_bytes(), suffix


def test_a_short_interlude(venv, outside):
    _run([str(venv / "sonify"), "interlude", "The sea", "--duration", "6", "--name", "short"], cwd=outside)
    info = "import soundfile, sys; i = soundfile.info(sys.argv[1]); print(i.samplerate, i.frames)"
    rate, frames = _run([str(venv / "python"), "-c", info, "renders/short.wav"], cwd=outside).stdout.split()
    assert (int(rate), int(frames)) == (48000, 6 * 48000)
    assert (outside / "renders" / "short.mid").stat().st_size > 0


SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


def test_the_all_extra_brings_every_optional_feature(dist, venv, outside):
    """Adds the `all` extra to the environment the tests above ran with the core alone (so this
    one comes last), then renders with each optional feature: the plot, the MLX backend and the
    SoundFont engine (which also needs FluidSynth's library and a SoundFont from Debian)."""
    (wheel,) = dist.glob("sonify-*.whl")
    _pip_install(venv, f"{wheel}[all]")
    _run([str(venv / "sonify"), "render", "The sea", "--tokens", "20", "--plot", "--backend", "mlx"], cwd=outside)
    assert (outside / "renders" / "the-sea.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if not SOUNDFONT.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SOUNDFONT} is missing (apt-get install timgm6mb-soundfont)")
        pytest.skip(f"no {SOUNDFONT}")
    _run([str(venv / "sonify"), "render", "The sea", "--tokens", "20", "--soundfont", str(SOUNDFONT), "--name", "sf"], cwd=outside)
    assert (outside / "renders" / "sf.wav").stat().st_size > 0
