"""The pieces of the remote source on hand-made inputs: the entropy bounds, reading each shape
of server answer, finding chosen tokens in the text, and the Frame's marker in a trace."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sonify import Frame, Trace
from sonify.model.remote.align import choose_from_text
from sonify.model.remote.estimate import entropy_bounds, remote_frame
from sonify.model.remote.http import error_message
from sonify.model.remote.responses import Candidate, Position, VocabularyText, parse_choice


def test_entropy_bounds_by_hand():
    # Seen: 0.5 and 0.25; 0.25 left for two unseen tokens, each at most 0.25.
    low, high = entropy_bounds([0.5, 0.25], unseen_cap=0.25, vocab_size=4)
    assert low == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))  # tail: one token of 0.25
    assert high == pytest.approx(-(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 2 * 0.125 * math.log(0.125)))  # spread evenly
    assert entropy_bounds([0.5, 0.5], 0.5, 4) == pytest.approx((math.log(2), math.log(2)))  # nothing unseen: exact
    assert entropy_bounds([0.5, 0.25], 0.25, None)[1] == math.inf  # no vocabulary size, no upper bound


def test_entropy_bounds_hold_for_random_distributions():
    rng = np.random.default_rng(0)
    for _ in range(300):
        size = int(rng.integers(3, 400))
        p = rng.dirichlet(np.full(size, float(rng.choice([0.05, 0.3, 1.0]))))
        p = p[p > 0]
        true = float(-(p * np.log(p)).sum())
        k = int(rng.integers(1, min(len(p), 25) + 1))
        top = np.sort(p)[::-1][:k]
        low, high = entropy_bounds(list(top), unseen_cap=float(top[-1]), vocab_size=len(p))
        assert low - 1e-9 <= true <= high + 1e-9


def test_remote_frame_says_what_it_estimated():
    top = (Candidate("a", math.log(0.5), 1), Candidate("b", math.log(0.3), 2))
    listed = remote_frame(0, Candidate("b", math.log(0.3), 2), top, "generated", (5, True), (2, 10))
    assert listed.rank == 2 and listed.logprob == pytest.approx(math.log(0.3)) and listed.estimated == ("entropy",)
    assert listed.absent == ("attention", "layers", "embedding") and listed.entropy == listed.entropy_bounds[0]
    unlisted = remote_frame(1, Candidate("c", math.nan), top, "generated", (6, False), (2, 10))
    # Not listed, probability not reported: at most min(0.3, 0.2 unseen), a lower bound on the rank.
    assert unlisted.logprob == pytest.approx(math.log(0.2)) and unlisted.rank == 3
    assert set(unlisted.estimated) == {"entropy", "rank", "logprob", "context"}


def test_legacy_shape_with_text_keys():
    """llama-cpp-python's answer, as it sent it: alternatives keyed by text, the chosen one added."""
    answer = {
        "model": "m",
        "choices": [{"text": " sea is", "finish_reason": "length", "logprobs": {
            "text_offset": [0, 4], "tokens": [" sea", " is"], "token_logprobs": [None, -5.13],
            "top_logprobs": [None, {"-": -1.35, ",": -1.80, " is": -5.13}],
        }}],
        "usage": {"prompt_tokens": 3},
    }  # fmt: skip
    choice = parse_choice(answer, VocabularyText())
    assert choice.prompt_tokens == 3 and choice.model == "m" and choice.has_logprobs
    first, second = choice.positions
    assert first.chosen is None and first.offset == 0
    assert second.chosen == Candidate(" is", -5.13) and [c.text for c in second.top] == ["-", ",", " is"]


def test_chat_shape_names_the_chosen_token():
    """OpenAI's and vLLM's shape: the entry is the chosen token, with its bytes."""
    entry = {"token": " th", "logprob": -0.7, "bytes": [32, 116, 104], "top_logprobs": [
        {"token": " a", "logprob": -0.5, "bytes": [32, 97]}, {"token": " th", "logprob": -0.7, "bytes": [32, 116, 104]}]}  # fmt: skip
    choice = parse_choice({"choices": [{"text": " th", "logprobs": {"content": [entry]}}]}, VocabularyText())
    (position,) = choice.positions
    assert position.chosen.text == " th" and position.chosen.content == b" th"
    assert [c.text for c in position.top] == [" a", " th"]


def test_mlx_shape_is_raw_vocabulary_and_the_chosen_token_comes_from_the_text():
    """mlx_lm.server's answer, as it sent it: the entry is the first of an unsorted list."""
    content = [
        {"id": 12, "token": ",", "logprob": -1.81, "top_logprobs": [
            {"id": 12, "token": ",", "logprob": -1.81}, {"id": 13, "token": "-", "logprob": -1.35}, {"id": 290, "token": "Ġof", "logprob": -3.29}]},
        {"id": 87, "token": "w", "logprob": -2.16, "top_logprobs": [{"id": 87, "token": "w", "logprob": -2.16}, {"id": 66, "token": "b", "logprob": -1.30}]},
        {"id": 562, "token": "orn", "logprob": -1.37, "top_logprobs": [{"id": 562, "token": "orn", "logprob": -1.37}, {"id": 358, "token": "ro", "logprob": -2.43}]},
        {"id": 199, "token": "Ċ", "logprob": -2.3, "top_logprobs": [{"id": 199, "token": "Ċ", "logprob": -2.3}, {"id": 0, "token": "<|endoftext|>", "logprob": -0.2}]},
    ]  # fmt: skip
    vocabulary = VocabularyText()
    choice = parse_choice({"choices": [{"text": "-born", "finish_reason": "stop", "logprobs": {"content": content}}]}, vocabulary)
    assert vocabulary.style == "bytelevel"
    assert all(p.chosen is None for p in choice.positions)
    assert [c.text for c in choice.positions[0].top] == ["-", ",", " of"]  # sorted, Ġ read as a space
    chosen = choose_from_text(choice.text, choice.positions)
    assert [p.chosen.token_id for p in chosen] == [13, 66, 562, 0]  # the end token reads as nothing


def test_a_chosen_token_that_was_not_listed_takes_the_text_between():
    positions = (
        Position(None, (Candidate("a", -0.1, 1, b"a"),)),
        Position(None, (Candidate("x", -0.1, 2, b"x"),)),
        Position(None, (Candidate("c", -0.1, 3, b"c"),)),
    )
    chosen = choose_from_text("abbc", positions)
    assert [p.chosen.text for p in chosen] == ["a", "bb", "c"]
    assert chosen[1].chosen.token_id is None and math.isnan(chosen[1].chosen.logprob)


def test_sentencepiece_vocabulary():
    vocabulary = VocabularyText()
    vocabulary.observe(["▁the", "<0x0A>"])
    assert vocabulary.style == "sentencepiece"
    assert vocabulary.to_bytes("▁café") == " café".encode() and vocabulary.to_bytes("<0x0A>") == b"\n"


def test_error_messages_in_each_shape():
    assert error_message(b'{"error": "top_logprobs must be at most 11"}') == "top_logprobs must be at most 11"
    assert error_message(b'{"error": {"message": "max allowed: 20", "code": 400}}') == "max allowed: 20"
    assert error_message(b'{"detail": "Invalid API Key"}') == "Invalid API Key"
    assert error_message(b"Bad Gateway") == "Bad Gateway"


def remote_like(index: int) -> Frame:
    return remote_frame(index, Candidate(" x", -1.0, None), (Candidate(" x", -1.0),), "generated", (index + 1, False), (5, None))


def test_the_frames_marker_round_trips_and_old_traces_still_read(tmp_path):
    trace = Trace({"source": "server"}, [remote_like(0), remote_like(1)])
    path = trace.write(tmp_path / "remote.trace.jsonl")
    line = json.loads(path.read_text().splitlines()[1])
    assert line["absent"] == ["attention", "layers", "embedding"] and line["entropy_bounds"][1] is None  # inf → null: plain JSON
    back = Trace.read(path)
    assert back == trace and back.frames[0].entropy_bounds[1] == math.inf and not back.frames[0].has("attention")
    # A trace written before the marker existed: no such keys, every group present.
    del line["absent"], line["estimated"], line["entropy_bounds"]
    old = tmp_path / "old.trace.jsonl"
    old.write_text(json.dumps({"format": "sonify-trace", "version": 1}) + "\n" + json.dumps(line) + "\n")
    frame = Trace.read(old).frames[0]
    assert frame.absent == () and frame.estimated == () and frame.entropy_bounds is None and frame.has("layers")
    line["absent"] = ["telepathy"]
    old.write_text(json.dumps({"format": "sonify-trace", "version": 1}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(Exception, match="not a valid frame.*telepathy"):
        Trace.read(old)
