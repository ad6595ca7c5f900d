"""The engine's stream: reading, generating, the sliding window, determinism."""

import numpy as np
import pytest
from checkpoints import TEXT

from sonify import Engine, SamplerSettings, SonifyError, load_model
from sonify.model.evaluation import text_nats, window_schedule
from sonify.model.profile import no_clock
from sonify.model.telemetry import log_softmax

LONG = TEXT * 3


@pytest.fixture(scope="module")
def llama(checkpoint_dir):
    return checkpoint_dir("llama")


def test_read_frames_cover_the_text_exactly(llama):
    model = load_model(llama)
    frames = list(Engine(model).read(TEXT))
    assert [f.token_id for f in frames] == model.tokenizer.encode(TEXT)
    assert "".join(f.text for f in frames) == TEXT
    assert [f.index for f in frames] == list(range(len(frames)))
    assert {f.mode for f in frames} == {"read"}
    f = frames[5]
    layers, heads = model.arch.num_layers, model.arch.num_heads
    assert len(f.attention.entropy) == layers and len(f.attention.head_entropy[0]) == heads
    assert len(f.layers.norm) == layers and len(f.embedding) == 3
    assert all(0.0 <= e <= 1.0 + 1e-6 for e in f.attention.entropy)
    assert f.context == 6  # the start token and five tokens before it
    assert np.isclose(f.attention.entropy[0], np.mean(f.attention.head_entropy[0]))


@pytest.mark.parametrize("window", [16, 21, 24])
def test_sliding_window_matches_fresh_windows(llama, window):
    """Past the window the oldest tokens fall off; each prediction equals a fresh run over its window."""
    model = load_model(llama, window=window)
    frames = list(Engine(model).read(LONG))
    tokens = model.tokenizer.encode(LONG)
    assert len(tokens) > 5 * window and len(frames) == len(tokens)
    assert "".join(f.text for f in frames) == LONG
    seq = [model.start_token(), *tokens]
    for s, e, first in window_schedule(len(tokens), window):
        logits = model.decoder.forward(np.array(seq[s:e]), model.decoder.new_cache()).logits
        logprobs = log_softmax(logits)
        for target in range(first, e + 1):
            frame = frames[target - 1]
            assert abs(frame.logprob - logprobs[target - 1 - s, seq[target]]) < 1e-4
            assert frame.context == target - s
    assert max(f.context for f in frames) == window


def test_generation_is_deterministic_and_continues_past_the_window(llama):
    model = load_model(llama, window=16)
    settings = SamplerSettings(temperature=1.0, top_p=0.95)
    run = lambda seed: list(Engine(model).generate("Shall I", max_tokens=60, sampler=settings, seed=seed, stop_at_eos=False))  # noqa: E731
    a, b, c = run(4), run(4), run(5)
    assert a == b
    assert [f.token_id for f in a] != [f.token_id for f in c]
    prompt = model.tokenizer.encode("Shall I")
    assert [f.mode for f in a] == ["read"] * len(prompt) + ["generated"] * 60
    assert "".join(f.text for f in a) == model.tokenizer.decode([f.token_id for f in a])


def test_generation_continues_the_prompt_like_reading(llama):
    """A generated frame's prediction equals reading the same tokens."""
    model = load_model(llama)
    gen = list(Engine(model).generate("Shall I", max_tokens=10, sampler=SamplerSettings(temperature=0), stop_at_eos=False))
    read = list(Engine(model).read_ids([f.token_id for f in gen]))
    assert [f.token_id for f in read] == [f.token_id for f in gen]
    for g, r in zip(gen, read):
        assert abs(g.logprob - r.logprob) < 1e-4 and abs(g.entropy - r.entropy) < 1e-4
        assert g.rank == r.rank
        np.testing.assert_allclose(g.attention.entropy, r.attention.entropy, atol=1e-4)
    assert all(f.rank == 1 for f in gen if f.mode == "generated")  # greedy


def test_generation_stops_at_end_of_text(llama):
    model = load_model(llama)
    eos = model.arch.eos_token_ids[0]
    frames = []
    for seed in range(40):  # a random model emits end-of-text now and then
        frames = list(Engine(model).generate("", max_tokens=40, sampler=SamplerSettings(temperature=1.5), seed=seed))
        if frames and frames[-1].token_id == eos:
            break
    assert frames[-1].token_id == eos and frames[-1].text == ""
    assert all(f.token_id != eos for f in frames[:-1])


def test_alternatives_are_listed_most_likely_first(llama):
    frames = list(Engine(load_model(llama), alternatives=4).read("Shall I compare"))
    for f in frames:
        probs = [p for _, p in f.top]
        assert len(f.top) == 4 and probs == sorted(probs, reverse=True)
        assert np.isclose(probs[0], np.exp(f.logprob)) == (f.rank == 1)


def test_empty_inputs(llama):
    engine = Engine(load_model(llama))
    with pytest.raises(SonifyError, match="empty"):
        list(engine.read(""))
    with pytest.raises(SonifyError, match="str"):
        list(engine.read(b"bytes"))
    assert len(list(engine.generate("", max_tokens=0))) == 0
    with pytest.raises(SonifyError, match="outside the vocabulary"):
        list(engine.read_ids([1, 10**6]))


def test_text_nats_equals_the_engines_reading(llama):
    model = load_model(llama, window=16)
    frames = list(Engine(model).read(LONG))
    assert abs(text_nats(model, LONG, chunk=5) + sum(f.logprob for f in frames)) < 1e-3


def test_phase_clock_times_every_phase_of_a_decoding_step(llama):
    """bench_engine --verbose reads where a step's time goes from the decoder's clock."""
    from sonify.model.profile import PhaseClock

    model = load_model(llama)
    clock = model.decoder.clock = PhaseClock()
    frames = list(Engine(model).generate("Shall I", max_tokens=3, sampler=SamplerSettings(temperature=0), stop_at_eos=False))
    phases = {"embed", "norms", "qkv", "attention", "out proj", "mlp up", "mlp act", "mlp down", "head", "telemetry"}
    assert phases | {"python", "finite check", "distribution", "sampling", "frame"} == set(clock.seconds)
    assert all(seconds > 0 for seconds in clock.seconds.values())
    model.decoder.clock = no_clock
    greedy = SamplerSettings(temperature=0)
    assert list(Engine(model).generate("Shall I", max_tokens=3, sampler=greedy, stop_at_eos=False)) == frames  # same results


def _trace_lines(folder, threads: int | None, tmp_path) -> list[str] | None:
    """The Frames' lines of a trace of reading LONG and of generating, with the model
    loaded at ``threads`` BLAS threads (the returned None: BLAS runs fewer here)."""
    from threadpoolctl import threadpool_info

    from sonify import Trace

    model = load_model(folder, threads=threads)
    if max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas") < (threads or 1):
        return None
    engine = Engine(model)
    settings = SamplerSettings(temperature=0.9, top_k=20)
    lines = []
    for mode, frames in (
        ("read", engine.read(LONG)),  # 64-token chunks, then a shorter last one
        ("generate", engine.generate(TEXT[:80], max_tokens=20, sampler=settings, seed=5, stop_at_eos=False)),
    ):
        path = Trace(engine.header(mode), list(frames)).write(tmp_path / f"{mode}-{threads}.jsonl")
        lines += path.read_text(encoding="utf-8").splitlines()[1:]  # the header records the thread count
    return lines


@pytest.mark.parametrize("name", ["default", "gpt2-split"])
def test_the_same_trace_bytes_at_blas_s_own_thread_count_and_at_explicit_one_or_two(checkpoint_dir, name, tmp_path):
    """``load_model(threads=N)`` (``--threads N``) must not change a trace's last digits, nor
    must BLAS's own count (``threads=None``): reading (several tokens per forward call) and
    generating (one per step). The default
    model splits no product; the wide GPT-2 splits its steps' products and its MLP's
    prompt products (see numpy_backend._linear_split)."""
    from threadpoolctl import threadpool_limits

    folder = None if name == "default" else checkpoint_dir("gpt2", n_inner=8192, vocab_size=16384)
    with threadpool_limits(limits=None, user_api="blas"):  # puts back the count load_model sets
        own = _trace_lines(folder, None, tmp_path)
        one = _trace_lines(folder, 1, tmp_path)
        two = _trace_lines(folder, 2, tmp_path)
    assert len(one) > 100
    assert own == one
    if two is None:
        pytest.skip("BLAS runs one thread here")
    assert one == two


def test_split_products_give_the_same_bytes_with_or_without_the_helper_which_ends_with_them():
    import gc

    from sonify.model.backends.split import SplitProducts, plan_blocks

    rng = np.random.default_rng(3)
    x = rng.standard_normal(1024, dtype=np.float32)
    wide = rng.standard_normal((1024, 1024), dtype=np.float32)  # 4 MB: cut over its inputs
    head = rng.standard_normal((1024, 5000), dtype=np.float32)  # 20 MB, as a head: cut over its outputs
    plans = [plan_blocks(wide), plan_blocks(head, by_inputs=False)]
    assert [(len(p.parts), p.by_inputs) for p in plans] == [(2, True), (2, False)]
    alone, shared = SplitProducts(helper=False), SplitProducts(helper=True)
    for plan, matrix in zip(plans, (wide, head)):
        expected = alone.matvec(x, plan, share=False)
        assert all(shared.matvec(x, plan, share=True).tobytes() == expected.tobytes() for _ in range(50))
        np.testing.assert_allclose(expected, x @ matrix, rtol=1e-4, atol=1e-3)
    helper = shared.thread
    assert helper.is_alive()
    del shared
    gc.collect()
    helper.join(timeout=5)
    assert not helper.is_alive()


def test_the_helper_reads_ahead_only_what_the_caller_runs_alone_before_the_next_shared_product():
    from sonify.model.backends.split import plan_blocks, prefetches

    rng = np.random.default_rng(4)
    small = rng.standard_normal((256, 512), dtype=np.float32)  # 0.5 MB: run whole by the caller
    other = rng.standard_normal((256, 256), dtype=np.float32)
    large = rng.standard_normal((1024, 1024), dtype=np.float32)  # 4 MB: shared
    whole, shared = plan_blocks(small), plan_blocks(large)
    assert prefetches([(small, whole), (other, plan_blocks(other))]).matrices == [small, other]
    assert prefetches([(small, whole), (large, shared), (other, plan_blocks(other))]).matrices == [small]
    assert prefetches([(large, shared), (small, whole)]) is None
    prefetch = prefetches([(small, whole)])
    before = small.copy()
    prefetch()  # reads, writes nothing of the caller's
    assert small.tobytes() == before.tobytes()
