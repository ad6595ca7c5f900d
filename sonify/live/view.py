"""The terminal view: the text appears as it sounds, coloured by surprisal, with the
model's current entropy and attention spread."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..music.score import Cue


def surprisal_style(surprisal: float) -> str:
    """Green for expected tokens through yellow to red for surprising ones (0..8 nats)."""
    x = max(0.0, min(surprisal / 8.0, 1.0))
    red, green = int(80 + 175 * min(1.0, 2 * x)), int(80 + 175 * min(1.0, 2 * (1 - x)))
    return f"rgb({red},{green},80)"


class TerminalView:
    def __init__(self, title: str):
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self.Text = Text
        self.text = Text()
        self.title = title
        self.status = ""
        self.controls: Callable[[], str] | None = None  # the steered parameters, shown after the telemetry
        self._lock = threading.Lock()
        self.console = Console()
        self.live = Live(self._render(), console=self.console, refresh_per_second=20, transient=False)

    def _render(self):
        from rich.panel import Panel

        controls = self.controls() if self.controls is not None else ""
        return Panel(self.text, title=self.title, subtitle=" · ".join(s for s in (self.status, controls) if s))

    def refresh(self) -> None:
        """Draw again (a controller moved a parameter)."""
        with self._lock:
            self.live.update(self._render())

    def start(self) -> None:
        self.live.start()

    def show(self, cue: Cue, attention: float) -> None:
        with self._lock:
            self.text.append(cue.text, style=surprisal_style(cue.surprisal))
            width, height = self.console.size
            if "\n" in cue.text or len(self.text) > width * height:
                self._scroll()
            self.status = f"entropy {cue.entropy:4.2f} nats · surprisal {cue.surprisal:4.2f} · attention spread {attention:4.2f}"
            self.live.update(self._render())

    def _scroll(self) -> None:
        """Keep only the latest lines that fit the screen: the newest text stays in view, and
        drawing it costs the same however long the performance has run."""
        width, height = self.console.size
        rows = max(height - 3, 3)  # the panel's border and subtitle take the rest
        lines = self.text.wrap(self.console, max(width - 4, 10))
        if len(lines) > rows:  # (a text that ends a line wraps to an empty last line, which keeps that)
            self.text = self.Text("\n").join(lines[-rows:])

    def stop(self) -> None:
        self.live.stop()
