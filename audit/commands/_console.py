"""The one way the commands make their rich console."""
from __future__ import annotations

from rich.console import Console

PIPED_WIDTH = 160  # logs and pipes have no width of their own; rich's default 80 wraps every table row


def make_console(piped_width: int = PIPED_WIDTH) -> Console:
    """A console at the terminal's width, or ``piped_width`` columns when output goes to a file or pipe."""
    console = Console()
    if not console.is_terminal:
        console.width = piped_width
    return console
