"""A model behind an inference server, as a stream of Frames.

``RemoteSource.generate`` asks an OpenAI-compatible ``/v1/completions`` endpoint to continue
a prompt with per-token log-probabilities and the top alternatives, and yields one Frame per
token as the answer comes in; ``read`` asks the server to score a given text (``echo`` with
log-probabilities), where it offers that.

Servers differ, so the first request finds out what this one takes, and the answer is kept:
``logprobs: K`` (the completions API) or ``logprobs: true, top_logprobs: K`` (mlx_lm.server);
the largest K it allows; whether streamed chunks carry log-probabilities (if not, tokens are
asked for ``chunk_tokens`` at a time, each request continuing the text so far).

A connection that drops, or a server that goes silent for ``stall_timeout`` seconds, is
reported and tried again after 0.5, 1, 2 ... seconds, ``retries`` times in a row; the new
request continues from the text generated so far. Then the run ends with ``ServerLost``.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from ...errors import SonifyError
from ...version import __version__
from ..frame import Frame
from ..sampling import SamplerSettings
from .align import choose_from_text
from .estimate import remote_frame
from .http import ConnectionLost, Endpoint, ServerError
from .responses import Choice, Position, VocabularyText, parse_choice

MAX_ASKS = 6  # requests spent finding out what a server accepts, per request made
_MAX_NUMBER = re.compile(r"(?:at most|max(?:imum)?(?: allowed)?(?: is| of)?:?|<=|less than or equal to|not exceed)\s*(\d+)", re.I)
_CONTEXT = re.compile(r"context (?:window|length)|maximum context|too long|exceed", re.I)
_EXTRAS = ("top_k", "min_p", "repetition_penalty", "repeat_penalty", "ignore_eos")


class ServerLost(SonifyError):
    """The server stopped answering and did not come back within the retries."""


class NoReading(SonifyError):
    """The server cannot score a given text (no prompt log-probabilities)."""


@dataclass(frozen=True)
class RemoteSettings:
    """Which server, and how patiently to talk to it.

    ``url`` is the API base (``http://127.0.0.1:8080/v1``); ``api_key`` is sent as a bearer
    token (read it from the environment, never from the command line); ``model`` is the
    model name sent with each request (``None``: the server's own). ``alternatives`` is how
    many top alternatives to ask for (servers cap it; more make the entropy estimate tighter);
    ``vocab_size`` bounds the entropy from above. ``retries`` and ``backoff`` (seconds, doubling)
    govern reconnection; ``slow_after`` seconds of silence is reported, ``stall_timeout`` counts
    as a lost connection. ``chunk_tokens`` is the request size for servers that do not stream
    log-probabilities, ``request_tokens`` the most asked for in one streamed request, and
    ``context_chars`` the most characters of text sent as a prompt. ``notify`` hears about
    slow or lost connections (one line each)."""

    url: str
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    alternatives: int = 20
    vocab_size: int | None = None
    retries: int = 3
    backoff: float = 0.5
    connect_timeout: float = 10.0
    slow_after: float = 5.0
    stall_timeout: float = 60.0
    chunk_tokens: int = 32
    request_tokens: int = 256
    context_chars: int = 4000
    notify: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.alternatives <= 100, f"alternatives has to be in 1..100, but is {self.alternatives}"),
            (self.vocab_size is None or self.vocab_size >= 2, f"vocab_size has to be >= 2, but is {self.vocab_size}"),
            (0 <= self.retries <= 20, f"retries has to be in 0..20, but is {self.retries}"),
            (self.backoff >= 0, f"backoff has to be >= 0 seconds, but is {self.backoff}"),
            (0 < self.slow_after <= self.stall_timeout, "slow_after has to be positive and at most stall_timeout"),
            (self.connect_timeout > 0, f"connect_timeout has to be > 0, but is {self.connect_timeout}"),
            (self.chunk_tokens >= 1 and self.request_tokens >= 1, "chunk_tokens and request_tokens have to be >= 1"),
            (self.context_chars >= 64, f"context_chars has to be >= 64, but is {self.context_chars}"),
        ]
        for ok, message in checks:
            if not ok:
                raise SonifyError(message)

    def open(self) -> RemoteSource:
        """A source that talks to this server."""
        return RemoteSource(self)


@dataclass(frozen=True)
class _Dialect:
    """What this server takes: ``flag`` (logprobs: true + top_logprobs: K) or ``logprobs: K``;
    K; whether streamed chunks carry log-probabilities (``None``: not known yet); whether it
    takes the sampling keys beyond OpenAI's."""

    flag: bool
    k: int
    streams: bool | None = None
    extras: bool = True

    def params(self) -> dict:
        return {"logprobs": True, "top_logprobs": self.k} if self.flag else {"logprobs": self.k}


@dataclass
class _Progress:
    """A run so far: the text generated, tokens yielded, requests made, failures in a row."""

    text: str = ""
    tokens: int = 0
    requests: int = 0
    failures: int = 0
    decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))


class RemoteSource:
    """Frames from a model behind an OpenAI-compatible server (see the module's docstring)."""

    def __init__(self, settings: RemoteSettings):
        self.settings = settings
        self.notify = settings.notify or (lambda message: None)
        self.endpoint = Endpoint(
            settings.url, settings.api_key, settings.connect_timeout, settings.slow_after, settings.stall_timeout, self.notify
        )
        self.vocabulary = VocabularyText()
        self.dialect: _Dialect | None = None
        self.model_name = settings.model
        self.request_tokens = settings.request_tokens
        self.context_chars = settings.context_chars

    @property
    def name(self) -> str:
        return self.model_name or "unknown"

    def header(self, mode: str, **info: object) -> dict:
        """The Trace header describing a run: the server, the model it named, how it was asked."""
        d = self.dialect
        asked = (
            None
            if d is None
            else {"alternatives": d.k, "parameter": "top_logprobs" if d.flag else "logprobs", "streamed": d.streams}
        )
        return {
            "sonify_version": __version__,
            "source": "server",
            "server": self.settings.url,
            "model": self.name,
            "backend": "server",
            "vocab_size": self.settings.vocab_size,
            "logprobs": asked,
            "mode": mode,
            **info,
        }

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        prompt: str,
        max_tokens: int = 100,
        sampler: SamplerSettings | None = None,
        seed: int = 0,
        stop_at_eos: bool = True,
        steer: Callable[[SamplerSettings], SamplerSettings] | None = None,
    ) -> Iterator[Frame]:
        """Frames for up to ``max_tokens`` tokens the server generates after ``prompt`` (the
        prompt's own tokens are not scored: a server adds what it adds, e.g. a start token).
        ``steer`` (live play) is asked for the sampler settings after each streamed token: when
        they change, the request is closed and the next one continues the text with them (a
        server that does not stream log-probabilities takes them at its next chunk)."""
        if max_tokens < 0:
            raise SonifyError(f"max_tokens has to be >= 0, but is {max_tokens}")
        sampler = sampler or SamplerSettings()
        if steer is not None:
            sampler = steer(sampler)
        run = _Progress()
        while run.tokens < max_tokens:
            per_request = (
                self.request_tokens if self.dialect is None or self.dialect.streams is not False else self.settings.chunk_tokens
            )
            body = {
                "prompt": self._prompt_tail(prompt + run.text),
                "max_tokens": min(max_tokens - run.tokens, per_request),
                **_sampling(sampler, seed + run.requests, stop_at_eos),
            }
            run.requests += 1
            before, finish, steered = run.tokens, None, None
            answer = self._completions(body)
            try:
                start = None
                for choice, positions in answer:
                    if start is None:
                        start = choice.prompt_tokens
                    run.text += choice.text
                    for position in positions:
                        if run.tokens >= max_tokens:
                            break
                        if position.chosen is None:
                            continue
                        seen = (start + run.tokens - before, True) if start is not None else (run.tokens + 1, False)
                        yield self._frame(run, position, "generated", seen)
                    finish = choice.finish_reason or finish
                    if steer is not None and (steered := steer(sampler)) != sampler:
                        break  # a whole chunk is taken: the next request continues after it
            except (ConnectionLost, ServerError) as exc:
                if run.tokens > before:  # it had come back: the count of failures in a row starts again
                    run.failures = 0
                self._recover(exc, run)
                continue
            finally:
                answer.close()
            if run.tokens > before:
                run.failures = 0
            if steered is not None and steered != sampler:
                sampler = steered
                continue
            if run.tokens == before or (finish == "stop" and stop_at_eos):
                return

    def _frame(self, run: _Progress, position: Position, mode: str, context: tuple[int, bool]) -> Frame:
        chosen = position.chosen
        if chosen.data is not None:  # bytes, possibly part of a character: text comes out whole
            chosen = replace(chosen, text=run.decoder.decode(chosen.data))
        frame = remote_frame(run.tokens, chosen, position.top, mode, context, (self.dialect.k, self.settings.vocab_size))
        run.tokens += 1
        return frame

    def _recover(self, exc: Exception, run: _Progress) -> None:
        """Wait and let the caller ask again, or give up with a one-line reason."""
        if isinstance(exc, ServerError) and not exc.retryable:
            if _CONTEXT.search(exc.message) and self.context_chars > 256:
                self.request_tokens = max(16, self.request_tokens // 2)
                self.context_chars = max(256, self.context_chars // 2)
                self.notify(f"the server's context is smaller: asking with {self.context_chars} characters of text")
                return
            raise exc
        run.failures += 1
        reason = exc.message if isinstance(exc, ServerError) else str(exc)
        if run.failures > self.settings.retries:
            raise ServerLost(
                f"the server at {self.settings.url} stopped answering after {run.tokens} tokens ({reason}); "
                f"gave up after {self.settings.retries} retries"
            ) from None
        delay = self.settings.backoff * 2 ** (run.failures - 1)
        self.notify(f"{reason}; trying again in {delay:g} s ({run.failures} of {self.settings.retries})")
        time.sleep(delay)

    def _prompt_tail(self, text: str) -> str:
        """The newest ``context_chars`` characters of ``text``, cut where a word starts."""
        if len(text) <= self.context_chars:
            return text
        tail = text[-self.context_chars :]
        cut = next((i for i, c in enumerate(tail) if c.isspace()), 0)
        return tail[cut:]

    # ------------------------------------------------------------------ reading

    def read(self, text: str) -> Iterator[Frame]:
        """Frames for the tokens of ``text`` as the server scores them (``echo`` with
        log-probabilities). A text longer than the server's context is read in pieces,
        each scored after the text before it. ``NoReading`` if the server cannot do it."""
        if not text:
            raise SonifyError("the text to read is empty; give some text")
        run = _Progress()
        done = 0  # characters of text already given to frames
        carry = ""  # text of a first token nothing predicted (no start token): goes with the next one
        while done < len(text):
            begin = _cut(text, max(0, done - self.context_chars // 2))
            end = _cut(text, begin + self.context_chars, floor=done)
            window = text[begin:end]
            try:
                positions, hidden = self._echo(window)
            except (ConnectionLost, ServerError) as exc:
                self._recover(exc, run)
                continue
            run.failures = 0
            piece_start = done - begin
            taken = [(p, i) for i, p in enumerate(positions) if p.offset is not None and piece_start <= p.offset < len(window)]
            for n, (position, i) in enumerate(taken):
                following = taken[n + 1][0].offset if n + 1 < len(taken) else len(window)
                start = piece_start if n == 0 else position.offset
                piece = carry + window[start:following]
                if position.chosen is None:  # the text's very first token: nothing predicted it
                    carry = piece
                    continue
                carry = ""
                chosen = replace(position.chosen, text=piece, data=None)
                context = (i + hidden, True) if hidden is not None else (i + 1, False)
                yield self._frame(run, replace(position, chosen=chosen), "read", context)
            done = end

    def _echo(self, window: str) -> tuple[tuple[Position, ...], int | None]:
        """The positions of ``window``'s tokens, each scored from the ones before it, and how
        many tokens the server put before them without echoing them (a start token; ``None``:
        not reported)."""
        body = {"prompt": window, "echo": True, "max_tokens": 1, "temperature": 0.0}
        for choice, positions in self._completions(body, stream=False, resolve=False):
            if not positions or any(p.offset is None for p in positions) or not choice.text.startswith(window):
                raise NoReading(self._no_reading())
            echoed = sum(p.offset < len(window) for p in positions)
            hidden = None if choice.prompt_tokens is None else max(0, choice.prompt_tokens - echoed)
            return positions, hidden
        raise NoReading(self._no_reading())

    def _no_reading(self) -> str:
        return (
            f"the server at {self.settings.url} gives no log-probabilities for a given text (no echo or prompt_logprobs; "
            "mlx_lm.server has none): read in-process without --server, or use llama.cpp's or vLLM's server"
        )

    # ------------------------------------------------------------------ requests

    def _completions(self, body: dict, stream: bool = True, resolve: bool = True) -> Iterator[tuple[Choice, tuple[Position, ...]]]:
        """The choices of one completion request, each with its positions (chosen tokens
        found from the text where the server did not say). The first request finds out
        what the server takes (``_Dialect``) and keeps it."""
        for _ in range(MAX_ASKS):
            dialect = self.dialect or _Dialect(flag=False, k=self.settings.alternatives)
            streaming = stream and dialect.streams is not False
            if not stream and body.get("echo") and dialect.flag:
                raise NoReading(self._no_reading())
            choices = self._send(_with_dialect(body, dialect), streaming)
            try:
                first = next(choices, None)
            except ServerError as exc:
                better = _adjusted(dialect, exc) if exc.status in (400, 422) else None
                if better is None:
                    raise
                if better.extras != dialect.extras:
                    self.notify(f"the server refused sampling settings beyond OpenAI's ({exc.message}); it uses its own for those")
                self.dialect = better
                continue
            if streaming and dialect.streams is None and first is not None:
                if not first.has_logprobs:  # mlx_lm.server: text only while streaming
                    choices.close()
                    self.dialect = replace(dialect, streams=False)
                    continue
                dialect = replace(dialect, streams=True)
            self.dialect = dialect
            if first is None:
                return
            if not first.has_logprobs and first.text:
                raise SonifyError(
                    f"the server at {self.settings.url} answered without log-probabilities; sonify needs a server that "
                    "reports them (vLLM, llama.cpp's server, mlx_lm.server)"
                )
            if self.model_name is None and first.model:
                self.model_name = first.model
            for choice in _chain(first, choices):
                positions = choice.positions
                if resolve and any(p.chosen is None for p in positions):
                    positions = choose_from_text(choice.text, positions)
                yield choice, positions
            return
        raise SonifyError(f"the server at {self.settings.url} accepted none of the ways sonify asks for log-probabilities")

    def _send(self, body: dict, streaming: bool) -> Iterator[Choice]:
        if not streaming:
            yield parse_choice(_checked(self.endpoint.post_json("/completions", {**body, "stream": False}), self), self.vocabulary)
            return
        events = self.endpoint.post_events("/completions", {**body, "stream": True})
        try:
            for event in events:
                yield parse_choice(_checked(event, self), self.vocabulary)
        finally:
            events.close()


def _checked(event: dict, source: RemoteSource) -> dict:
    """An error sent inside a 200 answer (vLLM streams them) becomes a ServerError."""
    error = event.get("error")
    if error is not None and not event.get("choices"):
        message = error.get("message", error) if isinstance(error, dict) else error
        code = error.get("code") if isinstance(error, dict) else None
        raise ServerError(code if isinstance(code, int) else 500, str(message)[:300], source.endpoint.address("/completions"))
    return event


def _chain(first: Choice, rest: Iterator[Choice]) -> Iterator[Choice]:
    yield first
    yield from rest


def _with_dialect(body: dict, dialect: _Dialect) -> dict:
    out = {**body, **dialect.params()}
    if not dialect.extras:
        out = {k: v for k, v in out.items() if k not in _EXTRAS}
    return out


def _adjusted(dialect: _Dialect, exc: ServerError) -> _Dialect | None:
    """What to ask next after the server refused ``dialect`` with ``exc``; ``None``: nothing."""
    message = exc.message
    if "logprobs" in message and "bool" in message and not dialect.flag:
        return replace(dialect, flag=True)
    if "logprobs" in message:
        cap = _MAX_NUMBER.search(message)
        if cap and 1 <= int(cap.group(1)) < dialect.k:
            return replace(dialect, k=int(cap.group(1)))
        if not dialect.flag and dialect.streams is None and "top_logprobs" not in message:
            return replace(dialect, flag=True)
        return None
    if dialect.extras and any(key in message for key in _EXTRAS):
        return replace(dialect, extras=False)
    return None


def _sampling(sampler: SamplerSettings, seed: int, stop_at_eos: bool) -> dict:
    """The request keys for ``sampler``. All of them are sent, defaults included: servers
    have defaults of their own (llama-cpp-python: top_k 40, min_p 0.05, repeat_penalty 1.1)."""
    body = {
        "temperature": sampler.temperature,
        "top_p": sampler.top_p,
        "top_k": sampler.top_k,
        "min_p": sampler.min_p,
        "repetition_penalty": sampler.repetition_penalty,
        "repeat_penalty": sampler.repetition_penalty,
        "seed": seed % 2**31,
    }
    if not stop_at_eos:
        body["ignore_eos"] = True
    return body


def _cut(text: str, at: int, floor: int = 0) -> int:
    """A place at or before ``at`` (after ``floor``) where whitespace starts, so that cutting
    there splits no word; ``at`` itself if there is none."""
    if at >= len(text):
        return len(text)
    for i in range(at, floor, -1):
        if text[i].isspace() and not text[i - 1].isspace():
            return i
    return at
