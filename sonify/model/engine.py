"""The engine: a language model as a stream of Frames, one per token.

``generate`` samples new text after a prompt; ``read`` walks through a given text
(teacher-forced), each Frame holding the model's prediction before it saw the token.
Both are generators, so a live performance and an offline render consume the same
stream. When a text outgrows the model's window, the oldest tokens fall off: the
newest three quarters of the window are kept, re-encoded, and the run goes on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import SonifyError
from ..version import __version__
from .frame import AttentionStats, Frame, LayerStats, Mode
from .loader import LanguageModel
from .profile import no_clock
from .sampling import SamplerSettings, apply_repetition_penalty, make_sampler
from .telemetry import log_softmax, log_softmax_entropy, rank_of, top_tokens
from .tokenizer import IncrementalDecoder

EMBEDDING_DIMS = 3


@dataclass
class _Run:
    """The state of one pass through a text: the cache and the tokens it holds."""

    cache: object
    decoder: IncrementalDecoder
    last: int  # the next token to feed: its logits predict the next token
    context: list[int] = field(default_factory=list)  # the tokens in the cache
    index: int = 0


def blas_info() -> dict:
    """The BLAS library NumPy uses and its thread count: a float sum's order, and so the
    trace's last digits, may depend on them (recorded in the trace header, with
    ``step_threads`` where decoding steps run on one thread whatever the count)."""
    from threadpoolctl import threadpool_info

    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return {}
    # NumPy's own BLAS (the one the model's matrix products use), not SciPy's or torch's.
    pool = next((p for p in pools if "numpy" in str(p.get("filepath", ""))), pools[0])
    return {"library": pool.get("internal_api"), "version": pool.get("version"), "threads": pool.get("num_threads")}


class Engine:
    """Runs a :class:`LanguageModel` token by token and reports what happens inside.

    ``alternatives`` is how many of the most likely tokens each Frame lists in ``top``;
    ``chunk`` is how many tokens of a read text go through the model in one call.
    """

    def __init__(self, model: LanguageModel, alternatives: int = 5, chunk: int = 64):
        if alternatives < 0:
            raise SonifyError(f"alternatives has to be >= 0, but is {alternatives}")
        self.model = model
        self.alternatives = alternatives
        window = model.window
        self.keep = window - window // 4
        self.chunk = max(1, min(chunk, window - self.keep))
        proj_rng = np.random.default_rng(0)  # fixed: the same model always projects the same way
        self._projection = (
            proj_rng.standard_normal((model.arch.hidden_size, EMBEDDING_DIMS)) / np.sqrt(model.arch.hidden_size)
        ).astype(np.float32)
        self._pieces: dict[int, str] = {}

    # ------------------------------------------------------------------ public

    def read(self, text: str) -> Iterator[Frame]:
        """One Frame per token of ``text``, each predicted from the tokens before it."""
        if not isinstance(text, str):
            raise SonifyError("the text to read must be a str; decode bytes as UTF-8 first")
        tokens = self.model.tokenizer.encode(text)
        if not text or not tokens:
            raise SonifyError("the text to read is empty; give some text")
        yield from self.read_ids(tokens)

    def read_ids(self, token_ids: Sequence[int]) -> Iterator[Frame]:
        """Like :meth:`read`, for token ids (e.g. to replay a trace's exact tokens)."""
        tokens = self._checked_ids(token_ids)
        if not tokens:
            raise SonifyError("no tokens to read")
        yield from self._read_tokens(self._start(), tokens, last=True)

    def generate(
        self,
        prompt: str | Sequence[int] = "",
        max_tokens: int = 100,
        sampler: SamplerSettings | None = None,
        seed: int = 0,
        include_prompt: bool = True,
        stop_at_eos: bool = True,
        steer: Callable[[SamplerSettings], SamplerSettings] | None = None,
    ) -> Iterator[Frame]:
        """Frames for the prompt's tokens (mode ``read``, unless ``include_prompt`` is
        False), then for up to ``max_tokens`` sampled tokens (mode ``generated``).

        ``prompt`` is text or a list of token ids. ``steer`` (live play) is asked before
        each sampled token for the settings to sample it with, given the current ones."""
        if max_tokens < 0:
            raise SonifyError(f"max_tokens has to be >= 0, but is {max_tokens}")
        settings = sampler or SamplerSettings()
        sample = make_sampler(settings)
        rng = np.random.default_rng(seed)
        run = self._start()
        prompt_tokens = self.model.tokenizer.encode(prompt) if isinstance(prompt, str) else self._checked_ids(prompt)
        for frame in self._read_tokens(run, prompt_tokens, last=max_tokens == 0):
            if include_prompt:
                yield frame
        eos = set(self.model.arch.eos_token_ids)
        lap = getattr(self.model.decoder, "clock", no_clock)
        for step in range(max_tokens):
            if steer is not None:
                wanted = steer(settings)
                if wanted != settings:
                    settings, sample = wanted, make_sampler(wanted)
            start = self._make_room(run, 1)
            lap("python")
            out = self.model.decoder.forward(np.array([run.last]), run.cache)
            self._check_finite(run, out)
            run.context.append(run.last)
            logits = out.logits[0]
            lap("finite check")
            logprobs, entropy = log_softmax_entropy(logits)
            lap("distribution")
            if settings.repetition_penalty != 1.0:
                recent = run.context[-settings.repetition_context :]
                chosen = sample(log_softmax(apply_repetition_penalty(logits, recent, settings.repetition_penalty)), rng)
            else:
                chosen = sample(logprobs, rng)
            stop = stop_at_eos and chosen in eos
            lap("sampling")
            frame = self._frame(
                run, out, 0, logprobs, float(entropy), chosen, "generated", start, final=stop or step == max_tokens - 1
            )
            lap("frame")
            yield frame
            if stop:
                return
            run.last = chosen

    def reader(self) -> Reader:
        """A reader that takes the text in pieces (a performer typing) in one running context."""
        return Reader(self)

    def header(self, mode: str, **info: object) -> dict:
        """The Trace header describing a run of this engine."""
        m = self.model
        return {
            "sonify_version": __version__,
            "model": m.name,
            "model_path": str(m.folder),
            "model_type": m.arch.model_type,
            "model_sha256": m.weights_digest(),
            "backend": m.backend,
            "window": m.window,
            "layers": m.arch.num_layers,
            "heads": m.arch.num_heads,
            "vocab_size": m.arch.vocab_size,
            "blas": {**blas_info(), **({"step_threads": 1} if getattr(m.decoder, "step_threads", None) else {})},
            "mode": mode,
            **info,
        }

    # ----------------------------------------------------------------- private

    def _checked_ids(self, token_ids: Sequence[int]) -> list[int]:
        tokens = [int(t) for t in token_ids]
        bad = [t for t in tokens if not 0 <= t < self.model.arch.vocab_size]
        if bad:
            raise SonifyError(f"token id {bad[0]} is outside the vocabulary (0..{self.model.arch.vocab_size - 1})")
        return tokens

    def _start(self) -> _Run:
        return _Run(
            cache=self.model.decoder.new_cache(),
            decoder=IncrementalDecoder(self.model.tokenizer),
            last=self.model.start_token(),
        )

    def _make_room(self, run: _Run, n: int) -> int:
        """Slide the window if ``n`` more tokens would not fit; returns the cache length."""
        if run.cache.length + n > self.model.window:
            kept = run.context[-self.keep :]
            run.cache.reset()
            for i in range(0, len(kept), self.chunk):
                self.model.decoder.forward(np.array(kept[i : i + self.chunk]), run.cache)
            run.context = list(kept)
        return run.cache.length

    def _read_tokens(self, run: _Run, tokens: Sequence[int], last: bool) -> Iterator[Frame]:
        """Teacher-force ``tokens``: feed each chunk behind ``run.last`` and score the chunk.

        ``last``: nothing follows these tokens, so the text decoder flushes at the end."""
        pos = 0
        while pos < len(tokens):
            room = self.model.window - run.cache.length  # fill the window exactly, then slide
            n = min(self.chunk, len(tokens) - pos, room if room > 0 else self.chunk)
            feed = [run.last, *tokens[pos : pos + n - 1]]
            start = self._make_room(run, len(feed))
            out = self.model.decoder.forward(np.array(feed), run.cache)
            self._check_finite(run, out)
            run.context.extend(feed)
            logprobs, entropies = log_softmax_entropy(out.logits)
            for j in range(n):
                final = last and pos + j == len(tokens) - 1
                yield self._frame(run, out, j, logprobs[j], float(entropies[j]), tokens[pos + j], "read", start, final=final)
            run.last = tokens[pos + n - 1]
            pos += n

    def _check_finite(self, run: _Run, out) -> None:
        """Stop at the first token whose logits or activations hold NaN or infinity.

        Such numbers would flow into the music as noise and into the trace as invalid JSON."""
        checked = (out.logits, out.final_hidden, out.layer_norm, out.layer_update)
        # One sum per array first: a finite sum means finite entries. A sum can also overflow
        # from large finite entries, so a non-finite one sends the arrays to the exact check.
        if all(math.isfinite(np.add.reduce(a, axis=None)) for a in checked):
            return
        rows = out.logits.shape[0]
        fine = np.isfinite(out.logits).all(-1) & np.isfinite(out.final_hidden).reshape(rows, -1).all(-1)
        fine &= np.isfinite(out.layer_norm).all(0) & np.isfinite(out.layer_update).all(0)
        if not fine.all():
            j = int(np.argmin(fine))
            where = "logits" if not np.isfinite(out.logits[j]).all() else "activations"
            raise SonifyError(
                f"the model's {where} at token {run.index + j} are not finite (NaN or infinity); its weights are broken "
                f"or overflow: check the checkpoint ({self.model.folder}), or try another --backend"
            )

    def _piece(self, token_id: int) -> str:
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self._pieces[token_id] = self.model.tokenizer.id_to_piece(token_id)
        return piece

    def _frame(
        self,
        run: _Run,
        out,
        j: int,
        logprobs: np.ndarray,
        entropy: float,
        token: int,
        mode: Mode,
        start: int,
        final: bool = False,
    ) -> Frame:
        # Every number of the frame's telemetry in one float32 array, read out with one
        # tolist(): per layer the means over heads (as ndarray.mean computes them, for less),
        # each head, the layer norms and updates, and the embedding.
        heads = np.concatenate((out.head_entropy[:, :, j], out.head_distance[:, :, j], out.head_focus[:, :, j]))
        layers, n_heads = len(out.layer_norm), heads.shape[1]
        means = np.add.reduce(heads, axis=1) / n_heads
        embedding = out.final_hidden[j] @ self._projection
        values = np.concatenate((means, heads.ravel(), out.layer_norm[:, j], out.layer_update[:, j], embedding)).tolist()
        rows = tuple(zip(*[iter(values[3 * layers : 3 * layers * (n_heads + 1)])] * n_heads))  # (3 * layers) heads' rows
        rest = 3 * layers * (n_heads + 1)
        frame = Frame(
            index=run.index,
            token_id=int(token),
            text=run.decoder.step(int(token), final=final),
            mode=mode,
            logprob=float(logprobs[token]),
            entropy=entropy,
            rank=rank_of(logprobs, token),
            top=tuple((self._piece(t), p) for t, p in top_tokens(logprobs, self.alternatives)),
            attention=AttentionStats(
                entropy=tuple(values[:layers]),
                distance=tuple(values[layers : 2 * layers]),
                focus=tuple(values[2 * layers : 3 * layers]),
                head_entropy=rows[:layers],
                head_distance=rows[layers : 2 * layers],
                head_focus=rows[2 * layers :],
            ),
            layers=LayerStats(norm=tuple(values[rest : rest + layers]), update=tuple(values[rest + layers : rest + 2 * layers])),
            embedding=tuple(values[rest + 2 * layers :]),
            context=start + j + 1,
        )
        run.index += 1
        return frame


class Reader:
    """Reads text piece by piece, each piece continuing the context of the ones before."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.run = engine._start()

    def feed(self, text: str, last: bool = False) -> Iterator[Frame]:
        """Frames for the tokens of ``text``; ``last`` when no more text will follow."""
        ids = self.engine.model.tokenizer.encode(text) if text else []
        yield from self.engine._read_tokens(self.run, ids, last=last)
