"""Telemetry reductions on inputs small enough to compute by hand."""

import math

import numpy as np
import pytest

from sonify.model.telemetry import attention_summaries, entropy, log_softmax, log_softmax_entropy, rank_of, top_tokens


def test_entropy_of_known_distributions():
    uniform4 = np.log(np.full(4, 0.25))
    assert math.isclose(entropy(uniform4), math.log(4), rel_tol=1e-12)
    half = np.log(np.array([0.5, 0.5, 1e-300]))
    assert math.isclose(entropy(half), math.log(2), rel_tol=1e-9)
    # H(0.7, 0.2, 0.1) = -(0.7 ln 0.7 + 0.2 ln 0.2 + 0.1 ln 0.1)
    p = np.array([0.7, 0.2, 0.1])
    assert math.isclose(entropy(np.log(p)), 0.8018185525433373, rel_tol=1e-12)


def test_log_softmax_is_shift_invariant_and_exact():
    lp = log_softmax(np.array([1000.0, 1000.0 + math.log(3)]))
    np.testing.assert_allclose(np.exp(lp), [0.25, 0.75], rtol=1e-12)
    lp32 = log_softmax(np.array([-3.0, -3.0 + math.log(3)], dtype=np.float32))
    np.testing.assert_allclose(np.exp(lp32), [0.25, 0.75], rtol=1e-6)


def test_rank_and_top():
    lp = np.log(np.array([0.1, 0.5, 0.15, 0.25]))
    assert rank_of(lp, 1) == 1 and rank_of(lp, 3) == 2 and rank_of(lp, 2) == 3 and rank_of(lp, 0) == 4
    top = top_tokens(lp, 3)
    assert [t for t, _ in top] == [1, 3, 2]
    np.testing.assert_allclose([p for _, p in top], [0.5, 0.25, 0.15])
    assert top_tokens(lp, 0) == [] and len(top_tokens(lp, 10)) == 4


def test_attention_summaries_by_hand():
    # Query 0 sees key 0 only; query 1 sees keys 0..1 evenly; query 2 looks at key 0 with 0.5,
    # keys 1 and 2 with 0.25 each.
    w = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.25, 0.25]], dtype=np.float32)
    ent, dist, focus = attention_summaries(w, np.array([0, 1, 2]))
    h2 = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    np.testing.assert_allclose(ent, [0.0, 1.0, h2 / math.log(3)], rtol=1e-6)
    # distance: query 1 -> 0.5*1 + 0.5*0 = 0.5; query 2 -> 0.5*2 + 0.25*1 + 0.25*0 = 1.25
    np.testing.assert_allclose(dist, [0.0, 0.5, 1.25], rtol=1e-6)
    np.testing.assert_allclose(focus, [1.0, 0.5, 0.5])


def test_attention_summaries_with_offset_and_stacked_axes():
    # Two layers x one head x one query at window position 3 (keys 0..3 visible).
    w = np.array([[[[0.0, 0.0, 0.0, 1.0]]], [[[0.25, 0.25, 0.25, 0.25]]]], dtype=np.float32)
    ent, dist, focus = attention_summaries(w, np.array([3]))
    assert ent.shape == (2, 1, 1)
    np.testing.assert_allclose(ent[:, 0, 0], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(dist[:, 0, 0], [0.0, 1.5], atol=1e-6)
    np.testing.assert_allclose(focus[:, 0, 0], [1.0, 0.25])


def test_log_softmax_entropy_in_one_pass_equals_the_two_step_form():
    logits = np.random.default_rng(1).standard_normal((4, 1000)).astype(np.float32) * 5
    logprobs, entropies = log_softmax_entropy(logits)
    np.testing.assert_allclose(logprobs, log_softmax(logits), atol=1e-12)
    np.testing.assert_allclose(entropies, entropy(log_softmax(logits)), rtol=1e-12)
    _, h = log_softmax_entropy(np.log(np.array([0.7, 0.2, 0.1])))
    assert math.isclose(float(h), 0.8018185525433373, rel_tol=1e-12)


def test_the_distribution_has_the_same_bytes_at_any_blas_thread_count():
    from threadpoolctl import threadpool_info, threadpool_limits

    logits = np.random.default_rng(2).standard_normal((3, 50257)).astype(np.float32) * 5  # a GPT-2 vocabulary
    results = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            if threads > 1 and max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas") < 2:
                pytest.skip("BLAS runs one thread here")
            results.append(log_softmax_entropy(logits))
    (lp1, h1), (lp2, h2) = results
    assert lp1.tobytes() == lp2.tobytes() and h1.tobytes() == h2.tobytes()
