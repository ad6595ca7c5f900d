"""Trace files: JSON Lines written atomically, read back equal."""

import json

import pytest

from sonify import Engine, SamplerSettings, SonifyError, Trace, load_model


@pytest.fixture(scope="module")
def trace(checkpoint_dir):
    model = load_model(checkpoint_dir("gpt2"))
    engine = Engine(model)
    settings = SamplerSettings(temperature=0.9, top_k=20)
    frames = list(engine.generate("Shall I compare thee", max_tokens=30, sampler=settings, seed=11, stop_at_eos=False))
    return Trace(engine.header("generate", prompt="Shall I compare thee", sampler=settings.to_dict(), seed=11), frames)


def test_written_and_read_back_equal(trace, tmp_path):
    path = trace.write(tmp_path / "t.jsonl")
    back = Trace.read(path)
    assert back == trace
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + len(trace.frames)
    header, first = json.loads(lines[0]), json.loads(lines[1])
    assert header["format"] == "sonify-trace" and header["seed"] == 11 and len(header["model_sha256"]) == 64
    for key in ("index", "token_id", "text", "mode", "logprob", "entropy", "rank", "top", "attention", "layers"):
        assert key in first
    assert set(first["attention"]) >= {"entropy", "distance", "focus"} and set(first["layers"]) == {"norm", "update"}


def test_same_seed_same_trace_bytes(checkpoint_dir, trace, tmp_path):
    model = load_model(checkpoint_dir("gpt2"))
    engine = Engine(model)
    settings = SamplerSettings(temperature=0.9, top_k=20)
    frames = list(engine.generate("Shall I compare thee", max_tokens=30, sampler=settings, seed=11, stop_at_eos=False))
    again = Trace(engine.header("generate", prompt="Shall I compare thee", sampler=settings.to_dict(), seed=11), frames)
    a, b = trace.write(tmp_path / "a.jsonl"), again.write(tmp_path / "b.jsonl")
    assert a.read_bytes() == b.read_bytes()


def test_failed_write_leaves_no_file_and_keeps_the_old_one(trace, tmp_path):
    path = tmp_path / "keep.jsonl"
    path.write_text("old")
    broken = Trace(trace.header, [*trace.frames, object()])  # not a Frame: fails half-way
    with pytest.raises(AttributeError):
        broken.write(path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jsonl"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("not json\n", ":1 is not JSON"),
        ('{"a": 1}\n', "not a sonify trace"),
        ('{"format": "sonify-trace", "version": 99}\n', "version 99"),
        ('{"format": "sonify-trace", "version": 1}\n{"index": 0}\n', ":2 is not a valid frame"),
    ],
)
def test_bad_trace_files(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(SonifyError, match=message):
        Trace.read(path)
