"""The master chain's shortcuts give the samples of the plain computation they replace."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import sosfilt

from sonify.synth.master import Collect, Limiter, LoudnessMeter, integrated_loudness, master_passes

SR = 48000


def _loud_noise(frames: int, seed: int = 0) -> np.ndarray:
    """(2, frames) float32 noise with bursts past the ceiling, so the limiter acts."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, frames)).astype(np.float32) * np.float32(0.05)
    x[:, frames // 3 : frames // 3 + 2000] *= np.float32(30.0)
    return x


@pytest.mark.parametrize("gain", [None, np.float32(1.7)])
def test_limiter_reads_slices_of_a_longer_piece_as_it_reads_copies(gain):
    """Blocks that are (frames, 2) views of a longer (2, frames) piece, of their own
    (2, frames) arrays and C-ordered copies all give the same bytes, block by block."""
    piece = _loud_noise(3 * 40000 + 123)
    cuts = [(0, 40000), (40000, 80123), (80123, piece.shape[1])]
    outs = []
    for layout in ("slice", "own", "copy"):
        limiter, out = Limiter(SR, -1.0), []
        for lo, hi in cuts:
            block = piece[:, lo:hi].T
            if layout == "own":
                block = block.T.copy().T
            elif layout == "copy":
                block = np.ascontiguousarray(block)
            out.append(limiter.process(block, gain))
        out.append(limiter.flush())
        outs.append(np.concatenate(out))
        assert limiter.engaged  # the gain has acted: the general path, not a plain delay
    assert outs[0].tobytes() == outs[1].tobytes() == outs[2].tobytes()


def _reference_steps(squares: np.ndarray, cuts: list[int], step: int) -> tuple[np.ndarray, np.ndarray]:
    """The steps and the open step's sum the meter keeps for blocks ending at ``cuts`` of
    (channels, frames) ``squares``: each block's part of a step summed on its own, in one
    sum, and the parts added in order."""
    steps, partial, filled, lo = [], np.zeros(squares.shape[0]), 0, 0
    for hi in cuts:
        at = lo
        while at < hi:
            end = min(hi, at + step - filled)
            partial = partial + squares[:, at:end].sum(axis=1)  # 0.0 + x is x: a whole step's one sum
            filled += end - at
            if filled == step:
                steps.append(partial)
                partial, filled = np.zeros(squares.shape[0]), 0
            at = end
        lo = hi
    return np.array(steps), partial


def test_meter_gives_the_steps_of_its_blocks_whatever_their_size():
    """The meter, squaring and summing a few steps at a time, keeps the steps of the plain
    computation (the block's squares at once, a step cut by a block edge summed in parts),
    for blocks that are views of the piece's (2, frames) array or C-ordered copies."""
    piece = _loud_noise(11 * 4800 + 1234, seed=3)
    weighted = sosfilt(LoudnessMeter(SR).sos, piece, axis=-1).astype(np.float32)
    squares = np.square(weighted, dtype=np.float64)
    for sizes in ([piece.shape[1]], [1, 4799, 4800, 4801, 17, 38400, 3 * 4800 + 5, 262], [9600, 4800 * 5, 4800]):
        cuts = list(np.cumsum(sizes * (piece.shape[1] // sum(sizes) + 1)))
        cuts = [c for c in cuts if c < piece.shape[1]] + [piece.shape[1]]
        steps, partial = _reference_steps(squares, cuts, 4800)
        for layout in ("slice", "copy"):
            meter, lo = LoudnessMeter(SR), 0
            for hi in cuts:
                block = piece[:, lo:hi].T
                meter.process(np.ascontiguousarray(block) if layout == "copy" else block)
                lo = hi
            assert meter.steps.tobytes() == steps.tobytes()
            assert meter.partial.tobytes() == partial.tobytes() and meter.filled == 1234


class _Copies:
    """A sink that keeps a copy of every block it is given (as a file or an encoder would use them)."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []

    def begin(self) -> None:
        self.blocks = []

    def write(self, block: np.ndarray) -> None:
        self.blocks.append(block.copy())

    def end(self) -> None:
        pass


@pytest.mark.parametrize("loudness", [-30.0, -9.0])
def test_a_piece_limited_in_the_collected_array_is_the_piece_limited_block_by_block(loudness):
    """master_passes into a Collect that knows the piece's length (the limiter works in its
    array while it has not acted) gives the bytes of a Collect that keeps the blocks, and a
    sink beside it gets the same blocks; quiet (the limiter never acts) and loud (it starts
    acting in the middle of the piece, after blocks made in place)."""
    piece = _loud_noise(5 * 30000 + 77, seed=5)
    piece[:, : 2 * 30000] *= np.float32(0.05)  # quiet first: the limiter acts from the third block
    blocks = [piece[:, i : i + 30000].T for i in range(0, piece.shape[1], 30000)]
    inside, kept, beside = Collect(frames=piece.shape[1]), Collect(), _Copies()
    master_passes(lambda: iter(blocks), SR, loudness, -1.0, [inside, beside])
    master_passes(lambda: iter(blocks), SR, loudness, -1.0, [kept])
    assert inside.audio().tobytes() == kept.audio().tobytes() == np.concatenate(beside.blocks).tobytes()
    assert inside.audio().shape == piece.T.shape
    limiter = Limiter(SR, -1.0)
    for block in blocks:
        limiter.process(block, np.float32(10.0 ** ((loudness - integrated_loudness(piece.T, SR)) / 20.0)))
    assert limiter.engaged == (loudness == -9.0)


def test_process_into_gives_what_process_gives():
    """Limiter.process_into, block after block in one array, gives the samples ``process``
    gives, including the block where the limiter starts to act and the blocks after it."""
    piece = _loud_noise(4 * 20000, seed=7)
    piece[:, :20000] *= np.float32(0.05)  # the burst at 26666: the limiter acts in the first block made in place
    gain = np.float32(1.5)
    plain, placed = Limiter(SR, -1.0), Limiter(SR, -1.0)
    into = np.zeros((piece.shape[1], 2), dtype=np.float32)
    first = piece[:, :20000].T
    assert plain.process(first, gain).tobytes() == placed.process(first, gain).tobytes()
    for at in range(20000, piece.shape[1], 20000):
        block = piece[:, at : at + 20000].T
        engaged = placed.engaged
        expected = plain.process(block, gain)
        got = placed.process_into(block, gain, into, at) if not engaged else placed.process(block, gain)
        assert got.tobytes() == expected.tobytes()
    assert placed.engaged


def test_groups_peak_is_the_largest_value_between_samples_of_the_groups_windows():
    """Limiter._groups_peak (a banded product over each group's samples, the region's edges
    apart) gives the largest magnitude ``_between`` finds for the windows ending in the
    given groups of 16 samples, those at the region's start and end among them."""
    limiter = Limiter(SR, -1.0)
    region = _loud_noise(16 * 300 + 7, seed=11).T
    width = limiter.TAPS_PER_PHASE
    views = sliding_window_view(region, width, axis=0)
    last = -(-region.shape[0] // 16) - 1
    for groups in ([0], [1], [2, 3], [last], [last - 1, last], [0, 5, 17, 150, 299, last], list(range(last + 1))):
        ends = np.concatenate([np.arange(16 * g, 16 * g + 16) for g in groups])
        ends = ends[(ends >= width - 1) & (ends < region.shape[0])]
        expected = float(limiter._between(views, ends - width + 1).max()) if ends.size else 0.0  # none: 0
        got = limiter._groups_peak(region, np.array(groups))
        assert got == pytest.approx(expected, rel=1e-12)
