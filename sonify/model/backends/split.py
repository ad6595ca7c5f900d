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
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from itertools import count

import numpy as np

# Products of at least this many bytes are split: below it, waking the helper and handing
# the result back (two thread wake-ups, ~6 us each on a busy pair of cores, ~80 us from a
# deeper sleep) costs more than the second core's bandwidth gives back.
SPLIT_BYTES = 2 << 20
# A layer's matrix is cut in two, one block per thread: every block more costs a hand-over
# of Python's interpreter lock between the threads (a thread wake-up each), measured to
# cost more than it balances. A matrix of more than BLOCK_BYTES (the output head) gets more
# blocks, up to MAX_BLOCKS, so that a helper the system schedules late still takes its share.
BLOCK_BYTES = 16 << 20
MAX_BLOCKS = 8
ALIGN = 64  # block edges on whole SIMD widths


@dataclass(frozen=True)
class Blocks:
    """An (in, out) matrix cut for :meth:`SplitProducts.matvec`: ``parts`` are (first,
    end, view) over the inputs (``by_inputs``: each part a partial sum of all outputs,
    added in order) or over the outputs (each part its outputs)."""

    outputs: int
    by_inputs: bool
    parts: tuple[tuple[int, int, np.ndarray], ...]


def _edges(length: int, n: int) -> list[int]:
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
    edges = _edges(length, n)
    views = [matrix[a:b] if by_inputs else matrix[:, a:b] for a, b in zip(edges, edges[1:])]
    return Blocks(outputs, by_inputs, tuple((a, b, v) for a, b, v in zip(edges, edges[1:], views)))


class _Job:
    __slots__ = ("tasks", "claim", "done")

    def __init__(self, tasks: list):
        self.tasks = tasks
        self.claim, self.done = count(), count()  # next() on a count is atomic under the GIL


def _run(job: _Job) -> int:
    """Take tasks until none is left; the count of tasks done after this thread's last one
    (-1 if it took none)."""
    tasks, last = job.tasks, -1
    n = len(tasks)
    while (i := next(job.claim)) < n:
        x, w, out = tasks[i]
        np.matmul(x, w, out=out)
        last = next(job.done)
    return last


class SplitProducts:
    """Runs ``x @ matrix`` over a matrix's :class:`Blocks` on the calling thread and, when
    ``helper``, a helper thread (a daemon that sleeps between products)."""

    def __init__(self, helper: bool):
        self._job: _Job | None = None
        self._busy = threading.Lock()  # one product at a time shares the helper
        self._wake = threading.Lock()
        self._finished = threading.Lock()  # released by the helper when it completes a job's last task
        self._wake.acquire()
        self._finished.acquire()
        self.helper = helper
        if helper:
            threading.Thread(target=self._serve, daemon=True, name="sonify-split").start()

    def matvec(self, x: np.ndarray, blocks: Blocks, share: bool) -> np.ndarray:
        """``x @ matrix`` as a new array; ``share``: with the helper's help."""
        parts = blocks.parts
        if blocks.by_inputs:
            partial = np.empty((len(parts), blocks.outputs), dtype=np.float32)
            tasks = [(x[a:b], w, partial[i]) for i, (a, b, w) in enumerate(parts)]
        else:
            out = np.empty(blocks.outputs, dtype=np.float32)
            tasks = [(x, w, out[a:b]) for a, b, w in parts]
        if len(tasks) == 1 or not (share and self.helper) or not self._busy.acquire(blocking=False):
            for xs, w, target in tasks:
                np.matmul(xs, w, out=target)
        else:
            try:
                job = self._job = _Job(tasks)
                if self._wake.locked():  # else the helper has not yet woken for an earlier call: it will see this job
                    self._wake.release()
                if _run(job) != len(tasks) - 1:  # the helper completes the last task: wait for it
                    self._finished.acquire()
            finally:
                self._busy.release()
        if not blocks.by_inputs:
            return out
        total = partial[0]
        for row in partial[1:]:  # in a fixed order: the same sum whichever thread made each part
            total += row
        return total

    def _serve(self) -> None:
        while True:
            self._wake.acquire()
            job = self._job
            if job is not None and _run(job) == len(job.tasks) - 1:
                self._finished.release()
