"""Running a command as a user without root's right to write anywhere, for the tests of
what a user cannot write (the suite may run as root, as CI does)."""

from __future__ import annotations

import os
import shutil

import pytest


def unprivileged() -> list[str]:
    """The prefix that runs a command unprivileged: nothing when the tests run as an ordinary
    user; as root, ``setpriv`` to nobody. Nobody keeps one capability, to read and search any
    folder: the interpreter and its packages may live where nobody may read (under /root),
    and reading is not what these tests are about. Writing goes by the permission bits."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.fail("running as root and setpriv is missing (apt-get install util-linux)")
    return [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]
