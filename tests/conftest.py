import shutil
import sys
import time
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import checkpoints  # noqa: E402


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    """A function building (once per session) a random checkpoint of a family, with options."""
    built: dict[tuple, Path] = {}

    def make(kind: str, **overrides) -> Path:
        key = (kind, tuple(sorted((k, repr(v)) for k, v in overrides.items())))
        if key not in built:
            folder = tmp_path_factory.mktemp(kind)
            built[key] = checkpoints.build(kind, folder, **overrides)
        return built[key]

    return make


@pytest.fixture(scope="session")
def tokenizer_model(checkpoint_dir):
    from sonify import load_model

    return load_model(checkpoint_dir("llama"))


def pytest_collection_modifyitems(items):
    """A test on a JACK server runs in real time: it is marked ``realtime`` (see pyproject), so
    ``.ci/run`` runs it alone, after the rest has run on every core."""
    for item in items:
        if "jack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realtime)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that ran on a JACK test server gets the server's own account (xruns,
    graph errors) in its report: timing and delivery failures are then told apart from the
    machine's."""
    outcome = yield
    report = outcome.get_result()
    jack = getattr(item, "funcargs", {}).get("jack")
    if report.failed and hasattr(jack, "log_summary"):
        report.sections.append(("jackd log", jack.log_summary() or "(nothing beyond its banner)"))


@pytest.fixture(scope="module")
def jack(tmp_path_factory):
    """A JACK server (dummy driver, synchronous) for a module's live tests; see jackrig."""
    from jackrig import release_portaudio, start_jack, stop_jack

    _, server = start_jack(tmp_path_factory.mktemp("jack"))
    yield server
    release_portaudio()  # PortAudio must let go of the server before it stops
    stop_jack(server.proc)


SETTLE = 0.3  # seconds: the server's longest wait for a client (20 periods) and some


@pytest.fixture(autouse=True)
def _jack_graph_intact(request, tmp_path_factory):
    """Before each test on the module's JACK server: if the server broke its graph during
    the tests before (see ``Jack.broken``), the test gets a fresh one instead."""
    if "jack" in request.fixturenames:
        from jackrig import restart_jack

        server = request.getfixturevalue("jack")
        time.sleep(SETTLE)  # a period given up as the last test's clients closed is logged by now
        if server.broken():
            restart_jack(server, tmp_path_factory.mktemp("jack"))
        server.since = server.log_size()
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A test on a JACK server that fails while the server's own log says it broke its graph
    (``Jack.broken``: jack2's race, no fault of sonify's) runs once more on a fresh server,
    with a warning that says so; any other failure stands. A fault of sonify's that broke
    the graph every time would fail both runs."""
    server = pyfuncitem.funcargs.get("jack")
    if server is None or not hasattr(server, "broken_since"):
        return None  # pytest calls the test as usual
    from jackrig import restart_jack

    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    mark = server.log_size()
    try:
        pyfuncitem.obj(**args)
    except Exception as exc:
        if not server.broken_since(mark):
            raise
        tmp = args.get("tmp_path")
        if tmp is not None:  # the second run starts from an empty folder, as the first did
            for entry in tmp.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        restart_jack(server, pyfuncitem.config._tmp_path_factory.mktemp("jack"))
        warnings.warn(pytest.PytestWarning(f"the JACK server broke its graph during the test ({type(exc).__name__}); ran it again on a fresh server"), stacklevel=1)
        pyfuncitem.obj(**args)
    return True
