"""A real browser for the page tests: Debian's Chromium driven by Playwright.

``.ci/system-packages`` installs ``chromium``; Playwright (the ``test`` extra) drives it
through ``executable_path``, so nothing is downloaded. Without either the tests skip,
except under ``CI=true``, where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--autoplay-policy=no-user-gesture-required", "--mute-audio"]
ARTEFACTS = Path(os.environ.get("SONIFY_ARTEFACTS", Path(__file__).resolve().parent.parent / "build" / "test-artefacts"))


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def unavailable(reason: str) -> None:
    """Skip for want of the browser; under CI that is a failure, never a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI runs the browser tests: .ci/system-packages installs chromium, the test extra Playwright)")
    pytest.skip(reason)


def launch():
    """(playwright, browser): a headless Chromium that plays media without a gesture, muted."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed (pip install -e '.[test]')")
    executable = chromium_path()
    if executable is None:
        unavailable("Chromium is not installed (apt-get install chromium)")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    except Exception:
        playwright.stop()
        raise
    return playwright, browser


def offline_context(browser, allowed: tuple[str, ...], **options):
    """A browser context with the network off and every request but ``allowed`` URLs
    aborted; returns (context, blocked), ``blocked`` listing each aborted request's URL."""
    context = browser.new_context(offline=True, **options)
    blocked: list[str] = []

    def route(r) -> None:
        if r.request.url in allowed:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return context, blocked


def keep_artefact(name: str, data: bytes) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / name
    path.write_bytes(data)
    return path
