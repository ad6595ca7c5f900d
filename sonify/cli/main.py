"""The ``sonify`` command line: the parser, and one exit path for every command.

Every problem the user can fix ends in one line on stderr (``error: ...``) and exit
status 2; Ctrl-C ends with status 130 and leaves no partial file behind.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import SonifyError, Terminated
from ..version import __version__
from . import calibrate, info, interlude, page, play, render, trace

# Each command module adds its subcommands (in this order in --help) and the function that runs each.
COMMAND_MODULES = (trace, render, page, play, interlude, info, calibrate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    try:
        return args.run(args)
    except SonifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated; all notes off, nothing was written", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug, not bad input: one line, the traceback on request
        if os.environ.get("SONIFY_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set SONIFY_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
