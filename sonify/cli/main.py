"""The ``sonify`` command line: the parser, and one exit path for every command.

Every problem the user can fix ends in one line on stderr (``error: ...``) and exit
status 2; Ctrl-C ends with status 130 and leaves no partial file behind.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys

from ..errors import SonifyError, Terminated
from ..version import __version__
from . import calibrate, info, interlude, page, play, render, trace

# Each command module adds its subcommands (in this order in --help) and the function that runs each.
COMMAND_MODULES = (trace, render, page, play, interlude, info, calibrate)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (``error: --duck has to be ...``) and status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # "argument --duck: has to be ..." (our option types) reads "--duck has to be ..."
        message = re.sub(r"^argument (\S+): has to be", r"\1 has to be", message)
        message = re.sub(r"^argument (\S+): (\S+ has to be)", r"\1: \2", message)
        if "has to be" not in message:
            message += f"; see {self.prog} --help"
        self.exit(2, f"error: {message}\n")


# Signals that end a command the way Ctrl-C does: a closed terminal (SIGHUP), a service
# manager or a timeout (SIGTERM). Each becomes Terminated, so every output is abandoned.
ABORT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _on_signal(signum, frame) -> None:
    raise Terminated(signal.Signals(signum).name)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise Terminated (SIGINT already raises KeyboardInterrupt)."""
    for sig in ABORT_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
            signal.signal(sig, _on_signal)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="sonify",
        description="Hear a language model think: run a model token by token, record what happens inside, and play it as music.",
    )
    parser.add_argument("--version", action="version", version=f"sonify {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from ..outputs.files import DISK_ERRORS, committed_paths

    install_signal_handlers()
    try:
        return args.run(args)
    except SonifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        name = str(exc) or ("SIGTERM" if isinstance(exc, Terminated) else "SIGINT")
        done = committed_paths()
        what = "nothing was written; earlier files are untouched"
        if done:
            what = f"the {len(done)} new files were complete before it ({', '.join(str(p) for p in done[:2])}{', ...' if len(done) > 2 else ''})"
        print(f"{'terminated' if isinstance(exc, Terminated) else 'interrupted'} ({name}); {what}", file=sys.stderr)
        return 128 + signal.Signals[name].value
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise_or_report(exc)
            return 1
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror}{where}; nothing was written (earlier files are untouched); free space or choose another --out", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not bad input: one line, the traceback on request
        raise_or_report(exc)
        return 1


def raise_or_report(exc: BaseException) -> None:
    """A bug: re-raised with SONIFY_DEBUG set, else one line that says how to see the traceback."""
    if os.environ.get("SONIFY_DEBUG"):
        raise exc
    first = str(exc).splitlines()[0] if str(exc) else ""
    print(f"error: unexpected {type(exc).__name__}: {first} (a bug; set SONIFY_DEBUG=1 for the traceback)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
