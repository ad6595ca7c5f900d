"""The frames of a trace file, read from the file when asked rather than held in memory.

A frame in memory takes about 8 KB (its per-head attention statistics are Python floats);
a trace read for a render holds only where each frame's line starts (8 bytes a frame) and
parses the line again each time the frame is asked for, so re-rendering an hour-long trace
needs about what a five-minute one does. The file stays open (the descriptor, not the path)
for as long as the frames are used: a render that replaces the same trace file by renaming
its new version over it still reads the old one.
"""

from __future__ import annotations

import json
import os
import stat
import weakref
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

from ..model.frame import Frame

CHUNK = 1 << 20  # bytes read at a time when the frames are read in order


class Descriptor:
    """An open file, closed when the last frames reading it are gone."""

    def __init__(self, path: str | os.PathLike):
        self.fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)
        # A pipe cannot be read again: its frames are kept as they are read.
        self.seekable = stat.S_ISREG(os.fstat(self.fd).st_mode)


class TraceFrames(Sequence[Frame]):
    """Frames read on demand from lines of an open trace file (``starts[i]`` to ``ends[i]``
    holds frame ``i``'s JSON). Equal to a list of the same frames; slices share the file."""

    def __init__(self, file: Descriptor, starts: Sequence[int], ends: Sequence[int]):
        self._file = file
        self._starts, self._ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._starts.size)

    @overload
    def __getitem__(self, index: int) -> Frame: ...

    @overload
    def __getitem__(self, index: slice) -> TraceFrames: ...

    def __getitem__(self, index: int | slice) -> Frame | TraceFrames:
        if isinstance(index, slice):
            return TraceFrames(self._file, self._starts[index], self._ends[index])
        start, end = int(self._starts[index]), int(self._ends[index])
        return _parse(os.pread(self._file.fd, end - start, start))

    def __iter__(self) -> Iterator[Frame]:
        # Consecutive lines are read together, a chunk at a time, not one system call a frame.
        k, n = 0, len(self)
        while k < n:
            first = int(self._starts[k])
            stop = k + 1
            while stop < n and self._ends[stop] - first <= CHUNK and self._starts[stop] >= self._ends[stop - 1]:
                stop += 1
            data = os.pread(self._file.fd, int(self._ends[stop - 1]) - first, first)
            for i in range(k, stop):
                yield _parse(data[int(self._starts[i]) - first : int(self._ends[i]) - first])
            k = stop

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, TraceFrames)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TraceFrames({len(self)} frames)"


def _parse(line: bytes) -> Frame:
    return Frame.from_dict(json.loads(line))
