"""The report as a document: sections of blocks (paragraphs, notes, warnings, tables, figures,
key-value lists, quoted text). ``render`` turns it into Markdown and the HTML template reads
it as it is; neither knows what a study is."""
from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from audit.report import figures

# A cell that reads as a number: "12.3", "+0.41", "< 0.001", "3 / 8", "1.2 to 3.4", "98.3 ± 0.2 (n = 3)", "1.20 GFLOP"
_NUMBER = re.compile(r"[<>+\-−]?\s*\d[\d.,]*(\s*(/|±|to)\s*[+\-−]?[\d.,—]+)?(\s*\(n = \d+\))?\s*[A-Za-z%]{0,5}")


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    csv: str | None = None  # file name under tables/ for the numbers behind it
    frame: pd.DataFrame | None = None
    row_class: list[str] = field(default_factory=list)
    css: str = ""
    caption: str = ""

    @property
    def numeric(self) -> list[bool]:
        """Right-align a column whose cells read as numbers."""
        return [all(_NUMBER.fullmatch(r[i]) or r[i] in ("—", "") for r in self.rows)
                and any(_NUMBER.fullmatch(r[i]) for r in self.rows) for i in range(len(self.columns))]


@dataclass
class FigureBlock:
    key: str
    title: str
    caption: str
    png: bytes
    compact: bool = False  # small multiples, laid out side by side

    @property
    def b64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


@dataclass
class Block:
    kind: str  # p, note, warn, table, figure, pre, kv
    text: str = ""
    table: Table | None = None
    figure: FigureBlock | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Section:
    id: str
    number: int
    title: str
    blocks: list[Block] = field(default_factory=list)
    short: str = ""  # the navigation bar's label

    def p(self, text: str) -> None:
        self.blocks.append(Block("p", text))

    def note(self, text: str) -> None:
        self.blocks.append(Block("note", text))

    def warn(self, text: str) -> None:
        self.blocks.append(Block("warn", text))

    def table(self, table: Table) -> None:
        self.blocks.append(Block("table", table=table))

    def kv(self, pairs: list[tuple[str, str]]) -> None:
        self.blocks.append(Block("kv", pairs=pairs))

    def pre(self, text: str) -> None:
        self.blocks.append(Block("pre", text))

    def figure(self, key: str, title: str, caption: str, draw: Callable[[], Figure], compact: bool = False) -> None:
        """Draw a figure; a failure becomes a visible note, never a broken report."""
        try:
            png = figures.to_png(draw())
        except Exception as exc:  # noqa: BLE001 - the rest of the report is still worth having
            self.warn(f"Figure '{title}' could not be drawn: {type(exc).__name__}: {exc}")
            return
        self.blocks.append(Block("figure", figure=FigureBlock(key, title, caption, png, compact)))
