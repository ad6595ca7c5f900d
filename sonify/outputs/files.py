"""Output files: where they go, what they are called, and writing them so that a reader
never sees half of one."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from ..errors import SonifyError


def slug(text: str, words: int = 5) -> str:
    """A file name from the start of ``text``: ``Shall I compare thee`` → ``shall-i-compare-thee``."""
    parts = re.findall(r"[^\W_]+", text.lower())[:words]
    return "-".join(parts) or "generated"


def prepare_output_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check it can be written, before any work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SonifyError(f"output folder {folder} is a file; choose another --out") from None
    except OSError as exc:
        raise SonifyError(f"cannot create output folder {folder}: {exc.strerror}; choose another --out") from None
    if not folder.is_dir():
        raise SonifyError(f"output folder {folder} is not a folder; choose another --out")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SonifyError(f"cannot write to {folder}: permission denied; choose another --out")
    return folder


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# A full or failing disk: said in one line, never a traceback.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS}
NOTHING_WRITTEN = "nothing was written (earlier files are untouched)"
_committed: list[Path] = []  # what this process's commands have put in place, for the Ctrl-C message


def committed_paths() -> list[Path]:
    """The files the commands of this process have committed so far."""
    return list(_committed)


def write_error(exc: OSError, path: str | os.PathLike) -> SonifyError:
    """``exc`` raised writing ``path``, as the one line the user reads."""
    fix = "free some space or choose another --out" if exc.errno in DISK_ERRORS else "choose another --out"
    return SonifyError(f"cannot write {path}: {exc.strerror or exc}; {NOTHING_WRITTEN}; {fix}")


def refuse_existing(paths: Iterable[str | os.PathLike], instead: str = "another --name or --out") -> None:
    """Refuse (one line) when one of ``paths`` exists: outputs never replace a file silently.
    ``instead``: what else the user can give, for the message."""
    existing = [Path(p) for p in paths if os.path.lexists(p)]
    if existing:
        more = f" (and {len(existing) - 1} more of that name)" if len(existing) > 1 else ""
        raise SonifyError(f"{existing[0]} exists{more}; give --force to replace it, or {instead}")


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block is done, then act on the first one.

    For steps that must not be cut in half: the renames that put a set of files in place,
    and C code calling back into Python (soundfile), where an exception cannot unwind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    releasing = False
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    held = [getattr(signal, n) for n in names if hasattr(signal, n)]
    previous = {}

    def hold(signum, frame) -> None:
        # Once the block is done, a signal goes straight to its own handler: one that lands
        # while the handlers are being put back must not leave this one in place, swallowing.
        if releasing:
            previous[signum](signum, frame)
        else:
            caught.append(signum)

    for sig in held:
        handler = signal.getsignal(sig)
        if callable(handler):
            previous[sig] = handler
            signal.signal(sig, hold)
    try:
        yield
    finally:
        releasing = True
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught and caught[0] in previous:
            previous[caught[0]](caught[0], None)


class OutputSet:
    """The files of one command, which appear together or not at all.

    Each file is written to a temporary name (``.NAME.XXXX.part``) in its own folder; ``commit``
    fsyncs them all, then renames them into place, so a reader never sees half a file and a
    failure, Ctrl-C, SIGTERM or SIGHUP before the commit leaves nothing new and every earlier
    file as it was. A rename that fails part-way puts back what it replaced.
    With ``overwrite`` False, a file that exists is refused (``refuse_existing``).
    ``announce`` records the committed files for the message an interruption prints."""

    def __init__(self, overwrite: bool = True, announce: bool = True) -> None:
        self.overwrite = overwrite
        self.announce = announce
        self._staged: list[tuple[Path, Path]] = []  # (temporary, final)

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()

    def stage(self, path: str | os.PathLike) -> Path:
        """A new empty temporary file beside ``path``, to be renamed to ``path`` at the commit."""
        path = Path(path)
        directory = path.parent if str(path.parent) else Path(".")
        if any(final == path for _, final in self._staged):
            raise ValueError(f"{path} is staged twice")
        # Signals wait until the file is registered: one landing between its creation and
        # the append would leave a temporary file that no abort knows of.
        with deferred_signals():
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
            except OSError as exc:
                raise write_error(exc, path) from None
            self._staged.append((Path(tmp), path))
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        return Path(tmp)

    @contextlib.contextmanager
    def open(self, path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
        """A file object writing what will become ``path``."""
        tmp = self.stage(path)
        try:
            with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
                yield f
        except OSError as exc:
            self.abort()
            raise write_error(exc, path) from None
        except BaseException:
            self.abort()
            raise

    def write(self, path: str | os.PathLike, data: bytes | str) -> Path:
        """Stage ``data`` (bytes or text) as the content of ``path``; returns ``path``."""
        with self.open(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return Path(path)

    def commit(self) -> list[Path]:
        """fsync every staged file, then rename them all into place; returns the paths."""
        staged, finals = self._staged, [final for _, final in self._staged]
        try:
            if not self.overwrite:
                refuse_existing(finals)
            for tmp, final in staged:
                try:
                    fd = os.open(tmp, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                except OSError as exc:
                    raise write_error(exc, final) from None
            with deferred_signals():
                self._rename_all()
        except BaseException:
            self.abort()
            raise
        self._staged = []
        if self.announce:
            _committed.extend(finals)
        return finals

    def _rename_all(self) -> None:
        """Rename every staged file into place; on a failure, undo the renames already done."""
        done: list[tuple[Path, Path | None]] = []  # (final, the kept earlier file or None)
        try:
            for tmp, final in self._staged:
                kept = None
                if os.path.lexists(final):
                    kept = final.with_name(f".{final.name}.{os.getpid()}.old")
                    try:
                        os.link(final, kept)  # kept under a second name until the set is in place
                    except OSError:
                        kept = final  # no hard links here: a failure later cannot bring it back
                os.replace(tmp, final)
                done.append((final, kept))
        except OSError as exc:
            failed = final
            for done_path, kept in reversed(done):
                with contextlib.suppress(OSError):
                    if kept is None:
                        os.unlink(done_path)
                    elif kept != done_path:
                        os.replace(kept, done_path)
            raise write_error(exc, failed) from None
        else:
            for final, kept in done:
                if kept is not None and kept != final:
                    with contextlib.suppress(OSError):
                        os.unlink(kept)
            for folder in {final.parent for _, final in self._staged}:
                _fsync_folder(folder)

    def abort(self) -> None:
        """Remove every staged temporary file; no final file is touched."""
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._staged = []


def _fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (where the system allows opening a folder)."""
    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    On any exception, Ctrl-C included, the temporary file is removed and ``path`` keeps
    whatever it held before. (One file alone; a command's set of files is an ``OutputSet``.)"""
    with OutputSet(announce=False) as outputs:
        with outputs.open(path, mode, encoding) as f:
            yield f
