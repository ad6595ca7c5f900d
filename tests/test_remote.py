"""A model behind a real inference server, started here on 127.0.0.1: mlx_lm.server on the
shipped model folder and llama-cpp-python's server on a GGUF written from the same weights.

What the server gives is checked against what the same checkpoint gives in-process under the
same conditions (the same prompt tokens, start token included; greedy): the same tokens,
log-probabilities within the server's precision (float16 weights), the in-process entropy
inside the estimate's stated bounds. Then the commands, the trace, and a server that dies.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import soundfile
from servers import start_llama, start_mlx
from traces import POEM

from sonify import Engine, SamplerSettings, Trace, load_model
from sonify.model.remote import NoReading, RemoteSettings, ServerLost

# Real servers with their time-outs, and one test playing through JACK: all run alone after the
# rest (see .ci/run; with the rest, on every core, the suite took 14 s longer in all).
pytestmark = pytest.mark.realtime

PROMPT = "The sea"
VOCAB = 2048  # the shipped model's vocabulary: bounds the entropy from above
# Log-probabilities from float16 weights: mlx_lm computes in float16, llama.cpp in float32.
LOGPROB_TOLERANCE = {"mlx": 2e-2, "llama.cpp": 1e-2}


@pytest.fixture(scope="module")
def mlx_server(tmp_path_factory):
    server = start_mlx(tmp_path_factory.mktemp("mlx"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    server = start_llama(tmp_path_factory.mktemp("llama"))
    yield server
    server.stop()


@pytest.fixture(params=["mlx", "llama.cpp"])
def server(request):
    return request.getfixturevalue("mlx_server" if request.param == "mlx" else "llama_server")


def server_prompt(server, prompt: str) -> str:
    """The prompt that gives the server the in-process tokens: mlx_lm.server adds no start
    token, so the prompt brings it; the GGUF tells llama.cpp to add it."""
    return "<|endoftext|>" + prompt if server.kind == "mlx" else prompt


def sonify(*args, env=None, cwd=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "sonify", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


@pytest.fixture(scope="module")
def in_process():
    engine = Engine(load_model(), alternatives=20)
    greedy = list(engine.generate(PROMPT, max_tokens=60, sampler=SamplerSettings(temperature=0), include_prompt=False))
    return engine, greedy


def test_greedy_generation_matches_in_process(server, in_process):
    _, expected = in_process
    source = RemoteSettings(server.url, vocab_size=VOCAB).open()
    got = list(source.generate(server_prompt(server, PROMPT), 60, SamplerSettings(temperature=0)))
    assert [f.text for f in got] == [f.text for f in expected]
    if server.kind == "mlx":  # it reports token ids (and, asked in chunks of 32, continues across requests)
        assert [f.token_id for f in got] == [f.token_id for f in expected]
        assert [f.context for f in got] == [f.context for f in expected]
    tolerance = LOGPROB_TOLERANCE[server.kind]
    for a, b in zip(expected, got):
        assert abs(a.logprob - b.logprob) <= tolerance, (a.index, a.logprob, b.logprob)
        low, high = b.entropy_bounds
        assert b.entropy == low and math.isfinite(high)
        assert low - tolerance <= a.entropy <= high + tolerance, (a.index, low, a.entropy, high)
        assert b.rank == a.rank
        listed = dict(b.top)
        for text, p in a.top[:5]:
            assert abs(listed[text] - p) <= tolerance, (a.index, text)
        assert b.absent == ("attention", "layers", "embedding") and not b.attention.entropy and not b.layers.norm
    assert source.header("generate")["model"]


def test_reading_matches_in_process(llama_server, in_process):
    engine, _ = in_process
    expected = list(engine.read(POEM))
    got = list(RemoteSettings(llama_server.url, vocab_size=VOCAB).open().read(POEM))
    assert "".join(f.text for f in got) == POEM
    # Nothing scores a text's first token but its start token, and llama.cpp does not report
    # that one: the server's frames begin at the second token, which carries the first's text.
    assert got[0].text == expected[0].text + expected[1].text
    assert [f.text for f in got[1:]] == [f.text for f in expected[2:]]
    for a, b in zip(expected[1:], got):
        assert abs(a.logprob - b.logprob) <= LOGPROB_TOLERANCE["llama.cpp"]
        assert a.context == b.context and "context" not in b.estimated
        assert b.entropy_bounds[0] - 1e-2 <= a.entropy <= b.entropy_bounds[1] + 1e-2


def test_a_long_text_is_read_in_pieces_that_fit_the_servers_context(llama_server):
    text = POEM * 12  # about 700 tokens; the server holds 256
    notes: list[str] = []
    got = list(RemoteSettings(llama_server.url, notify=notes.append).open().read(text))
    assert "".join(f.text for f in got) == text
    assert notes and all("context is smaller" in n for n in notes)


def test_mlx_server_cannot_read_a_text_and_says_so(mlx_server, tmp_path):
    with pytest.raises(NoReading):
        list(RemoteSettings(mlx_server.url).open().read(POEM))
    (tmp_path / "poem.txt").write_text(POEM)
    done = sonify("trace", "--read", tmp_path / "poem.txt", "--server", mlx_server.url, "--out", tmp_path / "t.jsonl")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "gives no log-probabilities for a given text" in done.stderr
    assert not (tmp_path / "t.jsonl").exists()


def test_render_writes_the_usual_files_and_score_rerenders_the_trace(server, tmp_path):
    done = sonify("render", "--server", server.url, PROMPT, "--tokens", 60, "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    renders = tmp_path / "renders"
    names = sorted(p.name for p in renders.iterdir())
    assert names == sorted(f"the-sea{s}" for s in (".wav", ".mid", ".srt", ".vtt", ".lrc", ".json", ".trace.jsonl"))
    trace = Trace.read(renders / "the-sea.trace.jsonl")
    assert len(trace.frames) == 60
    header = trace.header
    assert header["source"] == "server" and header["server"] == server.url and header["model"]
    assert header["sampler"]["temperature"] == 0.8 and header["seed"] == 0 and header["prompt"] == PROMPT
    assert header["logprobs"]["alternatives"] == (11 if server.kind == "mlx" else 20)
    assert all(f.absent == ("attention", "layers", "embedding") and "entropy" in f.estimated for f in trace.frames)
    again = sonify("score", renders / "the-sea.trace.jsonl", "--out", tmp_path / "again", "--no-audio")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again" / "the-sea.mid").read_bytes() == (renders / "the-sea.mid").read_bytes()


def test_interlude_from_a_server(llama_server, tmp_path):
    done = sonify("interlude", "--server", llama_server.url, PROMPT, "--duration", 8, "--out", tmp_path, "--name", "i")
    assert done.returncode == 0, done.stderr
    audio, rate = soundfile.read(tmp_path / "i.wav")
    assert len(audio) == 8 * rate
    trace = Trace.read(tmp_path / "i.trace.jsonl")
    assert trace.header["source"] == "server" and trace.frames and trace.frames[0].absent


def test_generation_continues_across_requests(llama_server):
    """The server holds 256 tokens: 400 are asked for in requests that continue the text."""
    source = RemoteSettings(llama_server.url, request_tokens=150, context_chars=400).open()
    frames = list(source.generate(PROMPT, 400, SamplerSettings(temperature=0.8), seed=5, stop_at_eos=False))
    assert len(frames) == 400 and [f.index for f in frames] == list(range(400))


@pytest.fixture
def own_llama_server(tmp_path, request):
    """A server of this test's own, to be stopped, killed or paused; it wants an API key.
    Parametrized indirectly with N, it holds N tokens (and its first answer is that long)."""
    server = start_llama(tmp_path, api_key="test-key-123", n_ctx=getattr(request, "param", 256))
    yield server
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def test_api_key_comes_from_the_environment_never_the_command_line(own_llama_server, tmp_path):
    url = own_llama_server.url
    env = {**os.environ, "SONIFY_API_KEY": "test-key-123"}
    ok = sonify("trace", PROMPT, "--tokens", 5, "--server", url, "--out", tmp_path / "a.jsonl", env=env)
    assert ok.returncode == 0, ok.stderr
    env_named = {**os.environ, "MY_KEY": "test-key-123"}
    ok = sonify(
        "trace", PROMPT, "--tokens", 5, "--server", url, "--api-key-env", "MY_KEY", "--out", tmp_path / "b.jsonl", env=env_named
    )
    assert ok.returncode == 0, ok.stderr
    cases = [
        (["--api-key", "test-key-123"], {}, "stay in your shell history"),
        (["--api-key-env", "NOT_SET_ANYWHERE"], {}, "that environment variable is not set"),
        (["--api-key-env", "sk-abc/123"], {}, "takes the NAME of an environment variable"),
        ([], {"SONIFY_API_KEY": "wrong"}, "answered 401"),
        ([], {"SONIFY_API_KEY": ""}, "answered 401"),
    ]
    for flags, extra, message in cases:
        done = sonify(
            "trace", PROMPT, "--tokens", 5, "--server", url, *flags, "--out", tmp_path / "c.jsonl", env={**os.environ, **extra}
        )
        assert done.returncode == 2, (flags, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr
        assert "test-key-123" not in done.stderr
    assert not (tmp_path / "c.jsonl").exists()


def test_server_killed_mid_render_is_one_line_and_no_files(own_llama_server, tmp_path):
    env = {**os.environ, "SONIFY_API_KEY": "test-key-123"}
    cmd = [
        sys.executable,
        "-m",
        "sonify",
        "render",
        "--server",
        own_llama_server.url,
        PROMPT,
        "--tokens",
        "20000",
        "--out",
        tmp_path / "out",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)  # the render has started streaming (about 50 tokens a second here)
    assert proc.poll() is None
    own_llama_server.process.kill()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert (
        lines[-1].startswith("error: the server at ")
        and "stopped answering after" in lines[-1]
        and "gave up after 3 retries" in lines[-1]
    )
    assert sum(line.startswith("server: ") and "trying again" in line for line in lines) == 3
    assert "Traceback" not in stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_silent_server_is_reported_then_given_up(own_llama_server):
    notes: list[str] = []
    settings = RemoteSettings(
        own_llama_server.url, api_key="test-key-123", slow_after=0.3, stall_timeout=1.0, retries=1, backoff=0.1, notify=notes.append
    )
    frames = settings.open().generate(PROMPT, 5000, SamplerSettings(temperature=0.8), stop_at_eos=False)
    first = next(frames)
    assert first.index == 0
    os.kill(own_llama_server.process.pid, signal.SIGSTOP)  # alive, connected, silent
    started = time.monotonic()
    with pytest.raises(ServerLost, match="sent nothing for"):
        for _ in frames:
            pass
    assert time.monotonic() - started < 10
    assert any("has sent nothing for" in n for n in notes) and any("trying again" in n for n in notes)


# What was sent before the server died plays out first: a fast piece keeps that short. No
# ghosts or chords: at this density their very short notes would crowd the port.
FAST_PRESET = """
[music]
tempo = 400.0
[timing]
words_per_minute = 240.0
step = 0.25
line_rest = 0.5
[voices.ghosts]
enabled = false
[voices.harmony]
enabled = false
"""


@pytest.mark.parametrize("own_llama_server", [128], indirect=True)
def test_server_killed_mid_play_ends_the_music_with_all_notes_off(own_llama_server, tmp_path):
    """What the server sent plays out (a fast preset keeps that short), then the music ends as
    at any end: every note off, one error line, exit 2. The server holds 128 tokens, so its
    first answer is about 125 (with 256 tokens, 253 took 34 s to play out here): the player
    asks for more only about 5 s into the music (64 tokens run ahead of it), long after the
    kill at the first note, so that request always meets the dead server."""
    from jackrig import Receiver, assert_all_notes_off, start_jack, stop_jack

    jackd, jack = start_jack(tmp_path)
    (tmp_path / "fast.toml").write_text(FAST_PRESET)
    env = {**jack.env(), "SONIFY_API_KEY": "test-key-123"}
    cmd = [
        sys.executable,
        "-m",
        "sonify",
        "play",
        "--server",
        own_llama_server.url,
        PROMPT,
        "--midi-out",
        "--preset",
        str(tmp_path / "fast.toml"),
        "--latency",
        "0.2",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        receiver = Receiver("sonify:out")
        try:
            deadline = time.monotonic() + 30
            while not receiver.notes_on() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert receiver.notes_on(), "no note arrived"
            own_llama_server.process.kill()
            _, stderr = proc.communicate(timeout=120)
            time.sleep(0.2)
        finally:
            receiver.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_jack(jackd)
    assert proc.returncode == 2, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: the server at ") and last.endswith("the music ended there, all notes off")
    assert "Traceback" not in stderr and "played " in stderr, stderr
    assert_all_notes_off(receiver.got)


def test_a_steered_temperature_goes_with_the_next_request(llama_server):
    """Live play's controller moves the temperature from 0 to 2 after 30 tokens: the request
    under way is closed and the next one samples at 2, so the tokens after the move are far
    more surprising than the greedy ones before it."""
    source = RemoteSettings(llama_server.url).open()
    frames: list = []

    def steer(current: SamplerSettings) -> SamplerSettings:
        return SamplerSettings(temperature=0.0) if len(frames) < 30 else SamplerSettings(temperature=2.0, top_p=1.0)

    for f in source.generate(PROMPT, 90, SamplerSettings(temperature=0.0), seed=3, stop_at_eos=False, steer=steer):
        frames.append(f)
    surprisal = [-f.logprob for f in frames]
    assert len(frames) == 90 and [f.index for f in frames] == list(range(90))
    before, after = surprisal[:30], surprisal[32:]
    assert sum(after) / len(after) > sum(before) / len(before) + 2.0, (before, after)
