"""Property tests: whatever the telemetry holds (NaN, inf, nothing, constants, 10,000 tokens),
the mapping makes a valid Score: no crash, no NaN, MIDI values in range, time-sorted."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonify import AttentionStats, Frame, LayerStats
from sonify.music.mapping import make_score
from sonify.music.preset import load_preset, preset_names
from sonify.music.signals import Scaler, Scaling

PRESETS = {name: load_preset(name) for name in preset_names()}
any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
texts = st.sampled_from(["", " ", "\n", "\n\n", " the", "ing", ",", " Ω", "word", "  \n", "é"])


@st.composite
def frames(draw, max_size: int = 40) -> list[Frame]:
    n_layers = draw(st.integers(0, 5))
    n_heads = draw(st.integers(1, 3))
    out = []
    for i in range(draw(st.integers(0, max_size))):
        per_layer = tuple(draw(st.lists(any_float, min_size=n_layers, max_size=n_layers)))
        heads = tuple(tuple(draw(st.lists(any_float, min_size=n_heads, max_size=n_heads))) for _ in range(n_layers))
        top = tuple((draw(texts), draw(any_float)) for _ in range(draw(st.integers(0, 6))))
        out.append(
            Frame(
                index=i,
                token_id=i,
                text=draw(texts),
                mode="generated",
                logprob=draw(any_float),
                entropy=draw(any_float),
                rank=draw(st.integers(1, 10)),
                top=top,
                attention=AttentionStats(per_layer, per_layer, per_layer, heads, heads, heads),
                layers=LayerStats(per_layer, tuple(reversed(per_layer))),
                embedding=tuple(draw(st.lists(any_float, min_size=3, max_size=3))),
                context=draw(st.integers(1, 4096)),
            )
        )
    return out


def assert_valid(score) -> None:
    for n in score.notes:
        assert all(math.isfinite(x) for x in (n.time, n.duration, n.beat, n.beats)), n
        assert 0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 and 0 <= n.channel <= 15
        assert n.duration >= 0 and n.time >= 0
        assert n.time <= score.end + 1e-9
    for c in score.controls:
        assert math.isfinite(c.time) and 0 <= c.value <= 127 and 0 <= c.controller <= 127
    for c in score.cues:
        assert all(math.isfinite(x) for x in (c.time, c.duration, c.beat, c.surprisal, c.entropy))
    for r in score.rests:
        assert math.isfinite(r.time) and math.isfinite(r.duration) and r.duration >= 0
    assert math.isfinite(score.end) and score.end >= 0
    assert [n.time for n in score.notes] == sorted(n.time for n in score.notes)
    assert [c.time for c in score.controls] == sorted(c.time for c in score.controls)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frames(), st.sampled_from(sorted(PRESETS)))
def test_any_telemetry_makes_a_valid_score(trace, name):
    score = make_score(trace, PRESETS[name])
    assert_valid(score)
    assert len(score.cues) == len(trace)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 300), any_float, st.sampled_from(sorted(PRESETS)))
def test_constant_telemetry_gives_constant_loudness(n, value, name):
    from traces import frame

    trace = [frame(i, logprob=-abs(value) if math.isfinite(value) else value, entropy=value, value=value) for i in range(n)]
    score = make_score(trace, PRESETS[name])
    assert_valid(score)
    melody = score.notes_of("melody")
    assert len({m.velocity for m in melody}) <= 1


def test_an_empty_trace_is_an_empty_score():
    for preset in PRESETS.values():
        score = make_score([], preset)
        assert score.notes == () and score.cues == () and score.controls == ()
        assert score.end == pytest.approx(preset.timing.end_rest * 60.0 / preset.music.tempo)


def test_ten_thousand_tokens(tmp_path):
    rng = np.random.default_rng(0)
    trace = []
    for i in range(10_000):
        layers = tuple(rng.gamma(2.0, size=6).tolist())
        heads = tuple(tuple(rng.random(4).tolist()) for _ in range(6))
        top = tuple((f" t{k}", float(p)) for k, p in enumerate(np.sort(rng.dirichlet(np.ones(6)))[::-1]))
        trace.append(
            Frame(
                i,
                i,
                "\n" if i % 97 == 96 else f" w{i % 13}",
                "generated",
                float(-rng.gamma(1.5)),
                float(rng.gamma(3.0)),
                int(rng.integers(1, 6)),
                top,
                AttentionStats(layers, layers, layers, heads, heads, heads),
                LayerStats(layers, layers),
                tuple(rng.normal(size=3).tolist()),
                min(i + 2, 257),
            )
        )
    for name in ("default", "midi-rig"):
        score = make_score(trace, PRESETS[name])
        assert_valid(score)
        words = sum(1 for f in trace if f.text.strip())
        assert len(score.cues) == 10_000 and len(score.notes_of("melody")) == len(score.words) == words


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=80), st.integers(2, 40), st.floats(0, 100))
def test_a_rolling_window_scales_against_its_own_last_values(values, window, q):
    """Where a preset asks for a rolling window, the limits are percentiles of the last
    ``window`` values (as np.percentile computes them), the current one included."""
    limit = f"{q:g}%"
    q = float(limit[:-1])
    scaler = Scaler(Scaling("surprisal", limits=(limit, "100%"), range=(0.0, 1.0), window=window), None)
    for i, value in enumerate(values):
        got = scaler(value)
        recent = np.array(values[max(0, i - window + 1) : i + 1])
        lo, hi = np.percentile(recent, q), recent.max()
        want = 0.5 if abs(hi - lo) < 1e-12 else min(max((value - lo) / (hi - lo), 0.0), 1.0)
        assert got == pytest.approx(want, abs=1e-9)
