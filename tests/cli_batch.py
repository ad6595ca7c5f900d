"""Run many ``sonify`` command lines as real processes, cheaply: this script imports sonify
once, then forks one child per case. Each child runs the command line's ``main`` in its own
folder with its own stdin, stdout and stderr files and exits with main's status, exactly as
``python -m sonify`` does (an uncaught exception prints Python's traceback and exits 1).

Input (stdin): a JSON list of {"argv": [...], "cwd": DIR, "stdin": TEXT or null}.
Output (stdout): a JSON list of {"code": N, "stderr": TEXT, "stdout": TEXT, "seconds": S}.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback


def run_case(case: dict) -> dict:
    cwd = case["cwd"]
    out, err = os.path.join(cwd, "..", "stdout.txt"), os.path.join(cwd, "..", "stderr.txt")
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: one command line, then exit with its status
        code = 1
        try:
            os.chdir(cwd)
            fd_in = os.open(os.devnull, os.O_RDONLY)
            if case.get("stdin") is not None:
                with open("../stdin.txt", "w", encoding="utf-8") as f:
                    f.write(case["stdin"])
                fd_in = os.open("../stdin.txt", os.O_RDONLY)
            os.dup2(fd_in, 0)
            for fd, path in ((1, out), (2, err)):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            from sonify.cli.main import main

            try:
                code = main(case["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(out, encoding="utf-8", errors="replace") as f_out, open(err, encoding="utf-8", errors="replace") as f_err:
        result = {"code": code, "stdout": f_out.read(), "stderr": f_err.read()}
    for path in (out, err):
        os.unlink(path)
    if os.path.exists(os.path.join(cwd, "..", "stdin.txt")):
        os.unlink(os.path.join(cwd, "..", "stdin.txt"))
    return {**result, "seconds": round(time.monotonic() - start, 3)}


def main() -> None:
    cases = json.load(sys.stdin)
    # What every case needs, imported once before forking (no threads are started by these).
    import sonify.cli.main  # noqa: F401
    import sonify.pipeline  # noqa: F401

    json.dump([run_case(case) for case in cases], sys.stdout)


if __name__ == "__main__":
    main()
