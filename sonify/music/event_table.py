"""A Score's events of one kind held by column, made into objects only when read.

An hour's piece has some 80,000 events; as frozen dataclasses each carries its own float
and int objects (about 200 bytes a note). An ``EventTable`` keeps every field of its
events in one column instead: numbers as doubles (9 bytes a value), strings in one
buffer, tuples of ints in one array; anything else (bools) as references. Reading an
event gives a new dataclass equal to the one stored, field for field and type for type,
so every sink reads the same values whether a Score holds a tuple or a table.

A table is filled as the mapping releases events, so a long piece's events never all
exist as objects at once: besides the memory itself, a long-lived small object made
while the heap is at its largest would keep a whole arena of freed ones from going back
to the system.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from typing import Any, Generic, TypeVar, overload

import numpy as np

T = TypeVar("T")
EXACT = 2**53  # ints below this in size are exact as doubles
INT64 = 2**63


class _Numbers:
    """Floats and ints: each as a double, with which were ints (each comes back exact)."""

    def __init__(self) -> None:
        self.values, self.ints = array("d"), array("b")

    @staticmethod
    def fits(v: Any) -> bool:
        return type(v) is float or type(v) is int and -EXACT < v < EXACT

    def append(self, v: float | int) -> None:
        self.values.append(v)
        self.ints.append(type(v) is int)

    def __getitem__(self, i: int) -> float | int:
        return int(self.values[i]) if self.ints[i] else self.values[i]


class _Texts:
    """Strings in one UTF-8 buffer (lone surrogates kept), with where each ends."""

    def __init__(self) -> None:
        self.data, self.ends = bytearray(), array("q")

    @staticmethod
    def fits(v: Any) -> bool:
        return type(v) is str

    def append(self, v: str) -> None:
        self.data += v.encode("utf-8", "surrogatepass")
        self.ends.append(len(self.data))

    def __getitem__(self, i: int) -> str:
        start = self.ends[i - 1] if i > 0 else 0
        return self.data[start : self.ends[i]].decode("utf-8", "surrogatepass")


class _IntTuples:
    """Tuples of ints in one array, with where each ends."""

    def __init__(self) -> None:
        self.data, self.ends = array("q"), array("q")

    @staticmethod
    def fits(v: Any) -> bool:
        return type(v) is tuple and all(type(x) is int and -INT64 <= x < INT64 for x in v)

    def append(self, v: tuple[int, ...]) -> None:
        self.data.extend(v)
        self.ends.append(len(self.data))

    def __getitem__(self, i: int) -> tuple[int, ...]:
        start = self.ends[i - 1] if i > 0 else 0
        return tuple(self.data[start : self.ends[i]])


class _Objects(list):
    """Anything else, as references (bools are shared objects: nothing is made per event)."""

    @staticmethod
    def fits(v: Any) -> bool:
        return True


FORMS = (_Numbers, _Texts, _IntTuples, _Objects)


class EventTable(Sequence[T], Generic[T]):
    """Events of dataclass type ``kind``, in order, stored by field; ``append`` and
    ``extend`` add to the end. Equal to a tuple or list of the same events."""

    def __init__(self, kind: type[T], events: Iterable[T] = ()):
        self._kind = kind
        self._names = tuple(f.name for f in fields(kind))  # type: ignore[arg-type]
        self._columns: list[Any] = [None] * len(self._names)
        self._length = 0
        self.extend(events)

    def append(self, event: T) -> None:
        for j, name in enumerate(self._names):
            value = getattr(event, name)
            column = self._columns[j]
            if column is None:  # the first value chooses the column's form
                column = self._columns[j] = next(form() for form in FORMS if form.fits(value))
            elif not column.fits(value):  # a value of another type: keep them all as objects
                column = self._columns[j] = _Objects(column[i] for i in range(self._length))
            column.append(value)
        self._length += 1

    def extend(self, events: Iterable[T]) -> None:
        for event in events:
            self.append(event)

    def __len__(self) -> int:
        return self._length

    def _sort_key(self, name: str) -> np.ndarray | None:
        """The field ``name`` as an array that sorts as its values do (strings by their rank
        among the column's distinct ones); None for a column of mixed objects."""
        column = self._columns[self._names.index(name)]
        if isinstance(column, _Numbers):
            return np.frombuffer(column.values, dtype=np.float64)
        if isinstance(column, _Texts):
            rank = {v: r for r, v in enumerate(sorted({column[i] for i in range(self._length)}))}
            return np.fromiter((rank[column[i]] for i in range(self._length)), dtype=np.int64, count=self._length)
        return None if self._length else np.zeros(0)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> EventTable[T]: ...

    def __getitem__(self, index: int | slice) -> T | EventTable[T]:
        if isinstance(index, slice):
            return EventTable(self._kind, (self[i] for i in range(self._length)[index]))
        if not -self._length <= index < self._length:
            raise IndexError("event index out of range")
        index %= self._length
        return self._kind(*(column[index] for column in self._columns))

    def __iter__(self) -> Iterator[T]:
        return (self[i] for i in range(self._length))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, list, EventTable)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EventTable({self._kind.__name__}, {self._length} events)"


def sorted_table(kind: type[T], events: Iterable[T], by: tuple[str, ...]) -> EventTable[T]:
    """``events`` ordered by the fields ``by`` (the first deciding, ties keep their order, as
    ``sorted`` with that key does), as a table. Sorted column by column: the keys are not
    made into one tuple an event (all of them would be alive at once, at the end of a piece)."""
    table = EventTable(kind, events)
    n = len(table)
    keys = [table._sort_key(name) for name in reversed(by)]  # np.lexsort: the last key decides first
    if any(k is None for k in keys):  # a column of mixed objects: the tuples after all
        order: Iterable[int] = sorted(range(n), key=lambda i: tuple(getattr(table[i], name) for name in by))
    else:
        order = np.lexsort(keys) if n else ()  # type: ignore[arg-type]
    out = EventTable(kind)
    out._columns = [type(c)() if c is not None else None for c in table._columns]
    for j, column in enumerate(table._columns):
        target = out._columns[j]
        if isinstance(column, _Numbers):
            target.values.frombytes(np.frombuffer(column.values, dtype=np.float64)[np.asarray(order, dtype=np.intp)].tobytes())
            target.ints.frombytes(np.frombuffer(column.ints, dtype=np.int8)[np.asarray(order, dtype=np.intp)].tobytes())
        elif column is not None:
            for i in order:
                target.append(column[int(i)])
    out._length = n
    return out
