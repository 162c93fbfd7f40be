"""The document as files: Markdown (``report.md``) and the self-contained HTML page
(``templates/index.html.j2``, rendered with jinja2, autoescape on)."""
from __future__ import annotations

import re
from pathlib import Path

import jinja2

from audit import folder as study_folder
from audit.report.document import Block, Section

TEMPLATES = Path(__file__).parent / "templates"


def md_text(text: object) -> str:
    """Markdown-safe text: no markup, no table breaks, no links."""
    s = str(text).replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "|*_`[]":
        s = s.replace(ch, "\\" + ch)
    return re.sub(r"\s*\n\s*", " ", s)


def _markdown_block(b: Block) -> list[str]:
    if b.kind in ("p", "note", "warn"):
        return [("> " if b.kind != "p" else "") + md_text(b.text), ""]
    if b.kind == "table" and b.table is not None:
        t = b.table
        out = [f"**{md_text(t.caption)}**", ""] if t.caption else []
        out.append("| " + " | ".join(md_text(c) for c in t.columns) + " |")
        out.append("|" + "|".join("---:" if n else "---" for n in t.numeric) + "|")
        out.extend("| " + " | ".join(md_text(c) for c in row) + " |" for row in t.rows)
        return [*out, ""]
    if b.kind == "figure" and b.figure is not None:
        f = b.figure
        return [f"![{md_text(f.title)}](figures/{f.key}.png)", "", f"*{md_text(f.title)}.* {md_text(f.caption)}", ""]
    if b.kind == "kv":
        return [f"- **{md_text(k)}**: {md_text(v)}" for k, v in b.pairs] + [""]
    if b.kind == "pre":
        # A fence longer than any run of tildes in the text: the quoted text cannot close it.
        fence = "~" * max(4, max((len(m) for m in re.findall(r"~+", b.text)), default=0) + 1)
        return [fence + "toml", b.text.rstrip("\n"), fence, ""]
    return []


def render_markdown(title: str, header: list[Block], sections: list[Section]) -> str:
    out = [f"# {md_text(title)}", ""]
    for b in header:
        out.extend(_markdown_block(b))
    for s in sections:
        out.extend([f"## {s.number}. {md_text(s.title)}", ""])
        for b in s.blocks:
            out.extend(_markdown_block(b))
    return "\n".join(out)


def environment() -> jinja2.Environment:
    # autoescape on for every template: names and numbers from a study folder are never markup.
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(title: str, header: list[Block], sections: list[Section], complete: bool,
                subtitle: str | None = None) -> str:
    """The page; ``subtitle`` replaces the line under the title that describes one study folder."""
    n_figures = sum(1 for b in [*header, *(b for s in sections for b in s.blocks)] if b.kind == "figure")
    return environment().get_template("index.html.j2").render(
        title=title, header=header, sections=sections, complete=complete, n_figures=n_figures, subtitle=subtitle)


def write_document(out: Path, title: str, header: list[Block], sections: list[Section], complete: bool,
                   subtitle: str | None = None) -> Path:
    """Write a report into ``out``: its tables as ``tables/*.csv``, its figures as ``figures/*.png``,
    ``report.md`` and the self-contained ``index.html`` (returned)."""
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    for b in [*header, *(b for s in sections for b in s.blocks)]:
        if b.kind == "table" and b.table is not None and b.table.csv and b.table.frame is not None:
            study_folder.write_atomic(out / "tables" / b.table.csv, b.table.frame.to_csv(index=False))
        if b.kind == "figure" and b.figure is not None:
            study_folder.write_atomic(out / "figures" / f"{b.figure.key}.png", b.figure.png)
    study_folder.write_atomic(out / "report.md", render_markdown(title, header, sections))
    index = out / "index.html"
    study_folder.write_atomic(index, render_html(title, header, sections, complete, subtitle=subtitle))
    return index
