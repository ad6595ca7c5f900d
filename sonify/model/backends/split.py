"""Matrix-vector products cut into fixed blocks that several threads share.

A decoding step is bound by streaming the weights from memory, and one core streams only
part of what the memory gives (measured on our 2-core machine: a 512 MB product at 16 GB/s
on one thread, 31 on two). Each large product of a step is therefore cut into blocks,
each one single-threaded BLAS call, and the calling thread and a helper thread take the
blocks in turn. The blocks depend on the matrix's shape alone, so every output is the same
sum in the same order however many threads ran (or whether the helper was scheduled at
all): the bytes are the same at any thread count. A helper that the operating system does
not schedule in time (a busy machine) costs nothing but its share: the caller takes the
blocks it did not.

A helper that has done its share of a job, and would sleep until the next, first reads the
weights of the caller's next single-threaded products (a job's ``after``), so that they are
in the processor's cache when the caller gets there: a 4.5 MB matrix streams at ~27 GB/s
from the cache on one core against ~15 from memory. Reading changes no result.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

import numpy as np

# Products of at least this many bytes are split. Sharing one costs ~100 us however large
# it is (measured on a 9 MB product: the helper starts 30-60 us after the caller, woken
# across cores, and the caller resumes 30-40 us after the last block), and two threads
# save half of ~65 us per MB: below ~3 MB (GPT-2's attention output, all of the default
# model) a split product is no faster.
SPLIT_BYTES = 3 << 20
# A layer's matrix is cut in two, one block per thread: every block more costs a hand-over
# of Python's interpreter lock between the threads (a thread wake-up each), measured to
# cost more than it balances. A matrix of more than BLOCK_BYTES (the output head) gets more
# blocks, up to MAX_BLOCKS, so that a helper the system schedules late still takes its share.
BLOCK_BYTES = 16 << 20
MAX_BLOCKS = 8
ALIGN = 64  # block edges on whole SIMD widths
# A product cut in two gives its first block (the caller's: it claims first) this many
# bytes more than the second (the helper's). The helper starts 30-60 us after the caller
# (a wake-up across cores), and a caller that finishes first sleeps until the helper is
# done and then wakes 30-40 us late; a head start of about the helper's delay makes the
# helper finish first, and the caller goes on without sleeping. The edges still depend on
# the shape alone.
HEAD_START_BYTES = 1 << 20


@dataclass(frozen=True)
class Blocks:
    """An (in, out) matrix cut for :meth:`SplitProducts.matvec`: ``parts`` are (first,
    end, view) over the inputs (``by_inputs``: each part a partial sum of all outputs,
    added in order) or over the outputs (each part its outputs)."""

    outputs: int
    by_inputs: bool
    parts: tuple[tuple[int, int, np.ndarray], ...]


def _edges(length: int, n: int, nbytes: int = 0) -> list[int]:
    """Block edges over ``range(length)`` for ``n`` blocks of ``nbytes`` in all: equal, but
    for two blocks the first gets ``HEAD_START_BYTES`` more than the second."""
    if n == 2:
        lead = HEAD_START_BYTES * length / nbytes if nbytes else 0.0
        middle = min(max(round((length + lead) / 2 / ALIGN) * ALIGN, ALIGN), length - ALIGN)
        return [0, middle, length]
    return [round(length * i / n / ALIGN) * ALIGN for i in range(n)] + [length]


def plan_blocks(matrix: np.ndarray, by_inputs: bool | None = None) -> Blocks:
    """How to cut ``matrix`` (in, out): whole below ``SPLIT_BYTES``; else in two, or for a
    matrix over ``BLOCK_BYTES`` in up to ``MAX_BLOCKS``. Layers' matrices are cut over their
    inputs, the head (the widest) over its outputs; each measured the faster way to share
    OpenBLAS's single-thread products between two cores (cutting a layer's outputs in two
    streamed slower than one thread for square and (out, in) matrices)."""
    rows, outputs = matrix.shape
    if by_inputs is None:
        by_inputs = matrix.nbytes <= BLOCK_BYTES
    length = rows if by_inputs else outputs
    n = 1 if matrix.nbytes < SPLIT_BYTES else min(MAX_BLOCKS, max(2, matrix.nbytes // BLOCK_BYTES), length // ALIGN)
    n -= n % 2
    if n < 2:
        return Blocks(outputs, False, ((0, outputs, matrix),))
    edges = _edges(length, n, matrix.nbytes)
    views = [matrix[a:b] if by_inputs else matrix[:, a:b] for a, b in zip(edges, edges[1:])]
    return Blocks(outputs, by_inputs, tuple((a, b, v) for a, b, v in zip(edges, edges[1:], views)))


def split_range(length: int, nbytes: int) -> list[tuple[int, int]]:
    """``range(length)`` in the two parts a task each takes (edges on ``ALIGN``, the first
    ``HEAD_START_BYTES`` larger), or whole when the work streams fewer than ``SPLIT_BYTES``."""
    if nbytes < SPLIT_BYTES or length < 2 * ALIGN:
        return [(0, length)]
    edges = _edges(length, 2, nbytes)
    return list(zip(edges, edges[1:]))


class _Job:
    __slots__ = ("tasks", "claim", "done", "after")

    def __init__(self, tasks: list[Callable[[], object]], after: Callable[[], object] | None = None):
        self.tasks, self.after = tasks, after
        self.claim, self.done = count(), count()  # next() on a count is atomic under the GIL


def _run(job: _Job) -> int:
    """Take tasks until none is left; the count of tasks done after this thread's last one
    (-1 if it took none)."""
    tasks, last = job.tasks, -1
    n = len(tasks)
    while (i := next(job.claim)) < n:
        tasks[i]()
        last = next(job.done)
    return last


class _Channel:
    """What the caller and the helper share: the job, and the locks that hand it over."""

    __slots__ = ("job", "wake", "finished", "open")

    def __init__(self) -> None:
        self.job: _Job | None = None
        self.wake = threading.Lock()  # held while no job waits for the helper
        self.finished = threading.Lock()  # released by the helper when it completes a job's last task
        self.wake.acquire()
        self.finished.acquire()
        self.open = True


def _serve(channel: _Channel) -> None:
    while True:
        channel.wake.acquire()
        if not channel.open:
            return
        job = channel.job
        if job is not None:
            last = _run(job)
            if last == len(job.tasks) - 1:
                channel.finished.release()
            if last >= 0 and job.after is not None:
                job.after()
        job = None  # hold no weights while asleep


def _close(channel: _Channel) -> None:
    channel.open = False
    if channel.wake.locked():
        channel.wake.release()


class SplitProducts:
    """Runs tasks (each a few single-threaded BLAS calls) on the calling thread and, when
    ``helper``, a helper thread (a daemon that sleeps between calls and ends with this
    object)."""

    def __init__(self, helper: bool):
        self._busy = threading.Lock()  # one call at a time shares the helper
        self._channel = channel = _Channel()
        self.helper = helper
        self.thread = threading.Thread(target=_serve, args=(channel,), daemon=True, name="sonify-split") if helper else None
        if self.thread:
            self.thread.start()
            weakref.finalize(self, _close, channel)

    def run(self, tasks: list[Callable[[], object]], share: bool, after: Callable[[], object] | None = None) -> None:
        """Run every task once; ``share``: with the helper's help. Tasks must write to
        places of their own. ``after``: what the helper runs when it has done its tasks
        (a :class:`Prefetch`), while the caller goes on; it must change no result."""
        if len(tasks) == 1 or not (share and self.helper) or not self._busy.acquire(blocking=False):
            for task in tasks:
                task()
            return
        channel = self._channel
        try:
            job = channel.job = _Job(tasks, after)
            if channel.wake.locked():  # else the helper has not yet woken for an earlier call: it will see this job
                channel.wake.release()
            if _run(job) != len(tasks) - 1:  # the helper completes the last task: wait for it
                channel.finished.acquire()
        finally:
            channel.job = None
            self._busy.release()

    def matvec(self, x: np.ndarray, blocks: Blocks, share: bool, after: Callable[[], object] | None = None) -> np.ndarray:
        """``x @ matrix`` as a new array; ``share``: with the helper's help (``after``: see
        :meth:`run`)."""
        parts = blocks.parts
        if len(parts) == 1:
            return x @ parts[0][2]
        if blocks.by_inputs:
            partial = np.empty((len(parts), blocks.outputs), dtype=np.float32)
            self.run([functools.partial(np.matmul, x[a:b], w, out=partial[i]) for i, (a, b, w) in enumerate(parts)], share, after)
            return sum_rows(partial)
        out = np.empty(blocks.outputs, dtype=np.float32)
        self.run([functools.partial(np.matmul, x, w, out=out[a:b]) for a, b, w in parts], share, after)
        return out


class Prefetch:
    """Reads matrices into the processor's cache: a matrix-vector product of each, with the
    interpreter lock released, into a scratch vector of its own (one per object: only the
    helper thread calls it)."""

    def __init__(self, matrices: list[np.ndarray]):
        self.matrices = matrices
        self._ones = np.ones(max(m.shape[0] for m in matrices), dtype=np.float32)
        self._scratch = np.empty(max(m.shape[1] for m in matrices), dtype=np.float32)

    def __call__(self) -> None:
        for m in self.matrices:
            np.matmul(self._ones[: m.shape[0]], m, out=self._scratch[: m.shape[1]])


def prefetches(products: list[tuple[np.ndarray, Blocks]]) -> Prefetch | None:
    """What a helper reads after a split job: of the caller's next ``products`` (matrix and
    its blocks, in the order the caller runs them), those it runs alone, up to the first it
    shares (the helper is busy with that one). None: nothing to read."""
    alone = []
    for matrix, blocks in products:
        if len(blocks.parts) > 1:
            break
        alone.append(matrix)
    return Prefetch(alone) if alone else None


def sum_rows(partial: np.ndarray) -> np.ndarray:
    """The rows' sum, added in order: the same sum whichever thread made each row."""
    total = partial[0]
    for row in partial[1:]:
        total += row
    return total
