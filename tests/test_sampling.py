"""Samplers on hand-written probability vectors with exact expected outputs."""

import numpy as np
import pytest

from sonify import SamplerSettings, SonifyError, make_sampler
from sonify.model.sampling import apply_min_p, apply_repetition_penalty, apply_top_k, apply_top_p, categorical

P = np.array([0.05, 0.4, 0.1, 0.3, 0.15])
LP = np.log(P)


def kept(lp):
    return sorted(np.flatnonzero(np.isfinite(lp)).tolist())


def test_top_k():
    assert kept(apply_top_k(LP, 2)) == [1, 3]
    assert kept(apply_top_k(LP, 1)) == [1]
    assert kept(apply_top_k(LP, 0)) == [0, 1, 2, 3, 4]


def test_top_p_keeps_smallest_set_reaching_p():
    # sorted: 0.4 (id 1), 0.3 (id 3), 0.15 (id 4), 0.1 (id 2), 0.05 (id 0)
    assert kept(apply_top_p(LP, 0.39)) == [1]
    assert kept(apply_top_p(LP, 0.5)) == [1, 3]  # 0.4 < 0.5 <= 0.7
    assert kept(apply_top_p(LP, 0.8)) == [1, 3, 4]  # 0.7 < 0.8 <= 0.85
    assert kept(apply_top_p(LP, 0.9)) == [1, 2, 3, 4]
    assert kept(apply_top_p(LP, 0.99)) == [0, 1, 2, 3, 4]


def test_min_p_relative_to_the_top_token():
    assert kept(apply_min_p(LP, 0.5)) == [1, 3]  # >= 0.2
    assert kept(apply_min_p(LP, 0.25)) == [1, 2, 3, 4]  # >= 0.1


def test_repetition_penalty_on_logits():
    logits = np.array([2.0, -1.0, 0.5, 3.0])
    out = apply_repetition_penalty(logits, [0, 1, 1], 2.0)
    np.testing.assert_allclose(out, [1.0, -2.0, 0.5, 3.0])
    assert apply_repetition_penalty(logits, [0], 1.0) is logits


def test_greedy_and_sampled_choices():
    assert make_sampler(SamplerSettings(temperature=0))(LP, np.random.default_rng(0)) == 1
    sample = make_sampler(SamplerSettings(temperature=1.0, top_k=1))
    assert {sample(LP, np.random.default_rng(s)) for s in range(20)} == {1}
    sample = make_sampler(SamplerSettings(temperature=1.0, top_p=0.5))
    assert {sample(LP, np.random.default_rng(s)) for s in range(50)} == {1, 3}


def test_categorical_frequencies_follow_the_distribution():
    rng = np.random.default_rng(7)
    counts = np.bincount([categorical(LP, rng) for _ in range(20000)], minlength=5) / 20000
    np.testing.assert_allclose(counts, P, atol=0.015)


def test_same_seed_same_draws():
    sample = make_sampler(SamplerSettings(temperature=0.8, top_p=0.95, min_p=0.01))
    a = [sample(LP, rng) for rng in [np.random.default_rng(3)] for _ in range(50)]
    b = [sample(LP, rng) for rng in [np.random.default_rng(3)] for _ in range(50)]
    assert a == b


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": -1}, "temperature has to be >= 0"),
        ({"top_k": -2}, "top_k has to be an integer >= 0"),
        ({"top_p": 0}, "top_p has to be in the (0, 1] interval"),
        ({"min_p": 1.5}, "min_p has to be in the [0, 1] interval"),
        ({"repetition_penalty": 0}, "repetition_penalty has to be > 0"),
    ],
)
def test_bad_settings_name_value_and_range(kwargs, message):
    with pytest.raises(SonifyError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        SamplerSettings(**kwargs)
