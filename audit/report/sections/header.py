"""The lines above the sections: what the study is, and, for one still running or interrupted,
how far each method got."""
from __future__ import annotations

import time

import pandas as pd

from audit.folder import JOURNAL, StudyFolder, is_complete
from audit.report.document import Block


def header(folder: StudyFolder, prog: pd.DataFrame) -> tuple[list[Block], bool]:
    """(blocks, complete): the study in one line, a warning when it is incomplete, and a warning
    for each part of the folder that could not be read."""
    blocks = [Block("p", f"{folder.get('dataset')}, teacher {folder.get('teacher')} → student {folder.get('student')}; "
                         f"methods {', '.join(folder.all_methods)}; {folder.trials} search trials per method, "
                         f"{folder.epochs if folder.epochs is not None else '?'} epoch(s) per run, "
                         f"{len(folder.seeds)} confirmation seeds; backend {folder.get('backend')}.")]
    complete = is_complete(prog)
    if not complete:
        journal_path = folder.path / JOURNAL
        when = ("last record written " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(journal_path.stat().st_mtime))
                if journal_path.exists() else "nothing recorded yet")
        per_method = "; ".join(f"{r.method} {r.search_trials}/{r.trials_budget} search trials, "
                               f"{r.confirm_runs}/{r.seeds_budget} confirmation runs ({r.state})" for r in prog.itertuples())
        blocks.append(Block("warn", f"This study is incomplete (still running, or interrupted; {when}): "
                                    f"{per_method}. Every number below uses only the runs recorded so far."))
    for p in folder.problems:
        blocks.append(Block("warn", p))
    return blocks, complete
