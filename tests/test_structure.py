"""The package's shape: a folder per stage, imports downstream only, no cycles, short signatures."""

from __future__ import annotations

import subprocess
import sys

import pytest
from layers import PACKAGE, cycles, imports, layering_violations, module_sources, public_functions


@pytest.fixture(scope="module")
def sources():
    return module_sources()


def test_few_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 6, top


def test_imports_flow_downstream_only(sources):
    assert layering_violations(sources) == []


def test_no_import_cycles(sources):
    assert cycles(sources) == []


def test_a_forbidden_import_is_caught(sources):
    """The checker itself: an upstream import, a peer import, a reach into model internals,
    and a cycle are each reported."""
    bad = dict(sources)
    bad["sonify.music.mapping"] += "\nfrom ..synth.engine import SynthEngine\n"
    bad["sonify.synth.render"] += "\nfrom ..outputs.audio import write_audio\n"
    bad["sonify.music.signals"] += "\nfrom ..model.engine import Engine\n"
    found = layering_violations(bad)
    assert any("sonify.music.mapping imports sonify.synth.engine" in v for v in found)
    assert any("sonify.synth.render imports sonify.outputs.audio" in v for v in found)
    assert any("sonify.music.signals imports sonify.model.engine" in v for v in found)
    looped = dict(sources)
    looped["sonify.synth.dsp"] += "\nfrom .engine import SynthEngine\n"
    assert any({"sonify.synth.dsp", "sonify.synth.engine"} <= set(group) for group in cycles(looped))


def test_imports_are_read_inside_functions_too(sources):
    assert "sonify.synth.render" in imports("sonify.pipeline", sources["sonify.pipeline"], sources)


def test_no_public_function_takes_more_than_eight_parameters(sources):
    long = [f"{module}.{name} ({count})" for module, name, count in public_functions(sources) if count > 8]
    assert long == []


def test_every_stage_says_what_it_takes_and_gives(sources):
    for stage in ("model", "music", "synth", "outputs", "live", "interlude", "cli"):
        doc = (PACKAGE / stage / "__init__.py").read_text().split('"""')[1]
        assert "Stage" in doc and ("Takes" in doc or "takes" in doc), stage


def test_the_public_api_is_at_the_top():
    code = (
        "import sonify; "
        "names = ['render', 'Engine', 'load_model', 'load_preset', 'make_score', 'Trace', 'Frame', 'Score', "
        "'SamplerSettings', 'Generation', 'ModelSettings', 'Length', 'OutputSettings', 'preset_names']; "
        "missing = [n for n in names if not hasattr(sonify, n)]; print(missing)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
