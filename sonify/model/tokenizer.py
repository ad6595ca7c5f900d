"""Tokenizing text and turning a token stream back into exact text pieces."""

from __future__ import annotations

from pathlib import Path

from ..errors import SonifyError


class TextTokenizer:
    """A checkpoint's ``tokenizer.json``, loaded with the ``tokenizers`` library."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        path = folder / "tokenizer.json"
        if not path.is_file():
            raise SonifyError(f"{path} is missing; sonify needs the fast tokenizer file tokenizer.json beside the weights")
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the library raises its own exception types for bad files
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SonifyError(f"{path} could not be read ({first}); re-download or re-export it") from None
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids for ``text``, without any special tokens added."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text for ``ids``; special tokens (start, end of text) decode to nothing."""
        return self._tok.decode(ids, skip_special_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_piece(self, token_id: int) -> str:
        """What one token reads as on its own (for alternatives shown beside the text)."""
        return self._tok.decode([token_id], skip_special_tokens=False)


class IncrementalDecoder:
    """Turns token ids, one at a time, into text pieces whose concatenation is exact.

    Byte-level BPE can split one UTF-8 character over several tokens, and some decoders
    drop a leading space at the very start. Each step decodes a short window that begins
    one piece back, so both effects are handled the same way as in a full decode; a token
    that ends inside a character yields ``""`` and its bytes come out with the next piece
    (or, at the last token, as the replacement character a full decode shows too).
    """

    def __init__(self, tokenizer: TextTokenizer):
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the window decoded for context
        self._read = 0  # tokens before this index have been emitted

    def step(self, token_id: int, final: bool = False) -> str:
        """The text this token completes; ``final`` flushes what is held back (the stream ends)."""
        self._ids.append(token_id)
        prefix_text = self._tokenizer.decode(self._ids[self._prefix : self._read])
        full_text = self._tokenizer.decode(self._ids[self._prefix :])
        if final or (len(full_text) > len(prefix_text) and not full_text.endswith("\ufffd")):
            piece = full_text[len(prefix_text) :]
            self._prefix, self._read = self._read, len(self._ids)
            return piece
        return ""
