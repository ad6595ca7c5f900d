"""Real inference servers for the remote-model tests, started here on 127.0.0.1 only.

``mlx_lm.server`` serves the shipped model folder as it is; llama-cpp-python's server serves a
GGUF file written from the same folder (``gguf_export``). Under CI=true a missing server
package fails the tests instead of skipping them: .ci/run installs both.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from sonify.model.checkpoint import DEFAULT_MODEL_DIR

READY_SECONDS = 60


@dataclass
class Server:
    kind: str
    url: str  # the API base, http://127.0.0.1:PORT/v1
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(module: str, install: str) -> None:
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is missing: .ci/run installs it ({install})", pytrace=False)
        pytest.skip(f"{module} is not installed ({install})")


def _wait_ready(server: Server, probe: str, api_key: str | None = None) -> Server:
    deadline = time.monotonic() + READY_SECONDS
    request = urllib.request.Request(server.url.removesuffix("/v1") + probe)
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the {server.kind} server exited: {server.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                if answer.status == 200:
                    json.loads(answer.read())
                    return server
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"the {server.kind} server was not ready in {READY_SECONDS} s: {server.log.read_text()[-2000:]}")


def start_mlx(tmp: Path) -> Server:
    """mlx_lm.server on the shipped model folder (it adds no start token: prompts bring it)."""
    _require("mlx_lm", "pip install mlx-lm 'mlx[cpu]'")
    port, log = _free_port(), tmp / "mlx_server.log"
    args = [sys.executable, "-m", "mlx_lm", "server", "--model", str(DEFAULT_MODEL_DIR), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return _wait_ready(Server("mlx", f"http://127.0.0.1:{port}/v1", process, log), "/health")


def default_gguf(tmp: Path) -> Path:
    """The shipped model as a GGUF file (written into ``tmp``)."""
    from gguf_export import export_gguf

    out = tmp / "sonify-default.gguf"
    return out if out.is_file() else export_gguf(DEFAULT_MODEL_DIR, out)


def start_llama(tmp: Path, api_key: str | None = None, n_ctx: int = 256) -> Server:
    """llama-cpp-python's server on the shipped model's GGUF: one thread (two stall on a
    2-core machine), the model's own 256-token context (or a smaller ``n_ctx``: a shorter
    first answer), a start token added as in-process."""
    _require("llama_cpp", ".ci/run builds its wheel")
    _require("gguf", "pip install gguf")
    model = default_gguf(tmp)
    port, log = _free_port(), tmp / f"llama_server_{os.getpid()}_{time.monotonic_ns()}.log"
    args = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", str(n_ctx), "--model_alias", "sonify-default",
    ]  # fmt: skip
    if api_key:
        args += ["--api_key", api_key]
    process = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return _wait_ready(Server("llama.cpp", f"http://127.0.0.1:{port}/v1", process, log), "/v1/models", api_key)
