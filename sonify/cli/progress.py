"""Progress bars on stderr (transient), or no-ops when stderr is not a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def token_progress(enabled: bool) -> Iterator[tuple[Callable[[int | None], None], Callable[[], None]]]:
    """A token progress bar. Yields ``start(total)``, called once the total is known
    (None: unknown), and ``advance()``."""
    if not enabled:
        yield (lambda total: None), (lambda: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("tokens"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("tokens", total=None)
        yield (lambda total: progress.update(task, total=total)), (lambda: progress.advance(task))


@contextlib.contextmanager
def render_progress(enabled: bool) -> Iterator[Callable[[float], None]]:
    """A rendering progress bar; yields ``progress(fraction)``."""
    if not enabled:
        yield lambda fraction: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("rendering"), BarColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("rendering", total=1.0)
        yield lambda fraction: bar.update(task, completed=fraction)
