"""Read safetensors files into NumPy without pickle and without a framework.

The ``safetensors`` library's NumPy loader has no bfloat16, so this reads the format
directly: an 8-byte little-endian header length, a JSON header naming each tensor's
dtype, shape and byte range, then the raw data. Each tensor is read from the file into
its own array (or straight into the caller's buffer), one at a time: the file is never
mapped, so its pages never count as this process's memory beside the converted weights.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from ..errors import SonifyError

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # widened by hand: NumPy has no bfloat16
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "U32": np.dtype("<u4"),
    "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsFile:
    """Lazy access to the tensors of one ``.safetensors`` file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                raw_len = f.read(8)
                if len(raw_len) < 8:
                    raise ValueError("file shorter than its 8-byte header length")
                (header_len,) = struct.unpack("<Q", raw_len)
                if header_len > min(_MAX_HEADER, size - 8):
                    raise ValueError(f"header length {header_len} does not fit a {size}-byte file")
                header = json.loads(f.read(header_len))
            if not isinstance(header, dict):
                raise ValueError("its header is not a JSON object")
        except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise SonifyError(f"{self.path} is not a readable safetensors file ({exc}); re-download or re-export it") from None
        self.metadata = header.pop("__metadata__", {}) or {}
        self._data_start = 8 + header_len
        self._entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            try:
                dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
                numbers = (start, end, *shape)
                if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers) or start > end:
                    raise ValueError
                if not isinstance(dtype, str):
                    raise ValueError
            except (KeyError, TypeError, ValueError):
                raise SonifyError(
                    f"{self.path}: tensor {name!r} has a malformed header entry (dtype, shape or data_offsets); re-export the file"
                ) from None
            if dtype not in _DTYPES:
                raise SonifyError(
                    f"{self.path}: tensor {name!r} has dtype {dtype}, which sonify cannot read (use float32, float16 or bfloat16)"
                )
            if end - start != int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype].itemsize or self._data_start + end > size:
                raise SonifyError(f"{self.path}: tensor {name!r} lies outside the file (truncated download?); re-download it")
            self._entries[name] = (dtype, shape, start, end)

    def keys(self) -> list[str]:
        return list(self._entries)

    def dtype_name(self, name: str) -> str:
        return self._entries[name][0]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def raw(self, name: str, rows: tuple[int, int] | None = None) -> np.ndarray:
        """The tensor as stored (bfloat16 as raw uint16), read into a new array; ``rows``
        (start, stop) reads only those rows of its first axis."""
        dtype, shape, start, end = self._entries[name]
        if rows is not None:
            row_bytes = (end - start) // shape[0] if shape and shape[0] else 0
            start, end = start + rows[0] * row_bytes, start + rows[1] * row_bytes
            shape = (rows[1] - rows[0], *shape[1:])
        array = np.empty(shape, dtype=_DTYPES[dtype])
        view = memoryview(array.reshape(-1).view(np.uint8))
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self._data_start + start)
            done = 0
            while done < len(view):  # one read returns at most ~2 GB on Linux
                got = f.readinto(view[done:])
                if not got:
                    raise SonifyError(f"{self.path}: tensor {name!r} ends early (the file shrank?); re-download it")
                done += got
        return array

    def float32(self, name: str, rows: tuple[int, int] | None = None) -> np.ndarray:
        """The tensor (or its ``rows``, as in :meth:`raw`) widened to a new float32 array."""
        data = self.raw(name, rows)
        kind = self._entries[name][0]
        if kind == "BF16":
            return (data.astype(np.uint32) << 16).view(np.float32)
        return data.astype(np.float32, copy=False)
