"""Text pieces stay exact across UTF-8 characters split between byte-level tokens."""

from hypothesis import given, settings
from hypothesis import strategies as st

from sonify import Engine, load_model
from sonify.model.tokenizer import IncrementalDecoder

SPLIT = "東京 🎵🎶 naïve “quotes” — déjà"


def test_multibyte_characters_are_split_between_tokens(checkpoint_dir):
    model = load_model(checkpoint_dir("llama"))
    ids = model.tokenizer.encode("🎵")
    assert len(ids) > 1  # four bytes, more than one token: the case under test
    frames = list(Engine(model).read(SPLIT))
    assert "".join(f.text for f in frames) == SPLIT
    assert any(f.text == "" for f in frames)  # a token ending mid-character holds its bytes back
    assert all("\ufffd" not in f.text for f in frames)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=383), min_size=1, max_size=40))
def test_any_token_stream_concatenates_to_the_full_decode(tokenizer_model, ids):
    tok = tokenizer_model.tokenizer
    decoder = IncrementalDecoder(tok)
    pieces = [decoder.step(t, final=i == len(ids) - 1) for i, t in enumerate(ids)]
    assert "".join(pieces) == tok.decode(ids)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_reading_any_text_gives_it_back(tokenizer_model, text):
    ids = tokenizer_model.tokenizer.encode(text)
    decoder = IncrementalDecoder(tokenizer_model.tokenizer)
    assert "".join(decoder.step(t, final=i == len(ids) - 1) for i, t in enumerate(ids)) == text
