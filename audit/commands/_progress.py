"""What a user sees while a study runs: rich status lines and progress bars on a terminal, one
line per finished trial and run in a log or a pipe (which have no live bars)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from audit.engine.teachers import Teacher
from audit.study import Study


def _bars(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(), console=console, transient=False,
    )


class ConsoleProgress:
    """``audit.pipeline.Progress`` drawn on a rich console."""

    def __init__(self, console: Console, study: Study) -> None:
        self.console, self.study = console, study
        self._bars: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._best: dict[str, float] = {}
        self._trials = 0

    def teacher(self, role: str, arch: str, train: Callable[[str], Teacher]) -> Teacher:
        what = f"{role} {arch}" + (f" on {self.study.dataset}" if role == "teacher" else "")
        with self.console.status(f"{what} (trained once, then cached)" if role == "teacher" and not self.study.teacher_weights else what):
            t = train(arch)
        how = ("from cache" if t.from_cache else f"trained in {t.meta['wall_s']:.0f}s") if "source" not in t.meta else \
            f"released, imported from {Path(t.meta['source']['path']).name}"
        extra = f"  ({how})" if role == "teacher" else ""
        self.console.print(f"{role} {arch}: val {t.meta['val_acc']:.2f}%  test {t.meta['test_acc']:.2f}%{extra}")
        return t

    def announce(self) -> None:
        study = self.study
        self.console.print(
            f"study [bold]{study.name}[/]: {', '.join(study.all_methods)} on {study.dataset} "
            f"({study.teacher} -> {study.student}), {study.trials} trials x {study.recipe.epochs} epochs per method, "
            f"{len(study.seeds)} seeds, backend {study.backend}"
        )

    def search_started(self, study: Study, done: dict[str, int]) -> None:
        self._trials, self._best = study.trials, {}
        self._bars = _bars(self.console).__enter__()
        self._tasks = {m: self._bars.add_task(f"search {m}", total=study.trials, completed=min(n, study.trials), note="")
                       for m, n in done.items()}

    def trial_done(self, rec: dict) -> None:
        m, best = rec["method"], self._best
        if rec.get("status") == "ok":
            best[m] = max(best.get(m, float("-inf")), rec["val_acc"])
        self._bars.update(self._tasks[m], advance=1, note=f"best val {best[m]:.2f}%" if m in best else "")
        if not self.console.is_terminal:  # a log has no live bars: one line per finished trial
            done = int(self._bars.tasks[self._tasks[m]].completed)
            what = f"val {rec['val_acc']:.2f}%" if rec.get("status") == "ok" else f"FAILED ({rec.get('reason')})"
            best_txt = f", best {best[m]:.2f}%" if m in best else ""
            self.console.print(f"search {m} {done}/{self._trials}: {what}{best_txt}, {rec.get('wall_s', 0):.1f}s", highlight=False)

    def search_ended(self) -> None:
        self._close()

    def confirm_started(self, runs: int) -> None:
        self._bars = _bars(self.console).__enter__()
        self._tasks = {"confirm": self._bars.add_task("confirm on test", total=runs, note="")}

    def run_done(self, rec: dict) -> None:
        self._bars.update(self._tasks["confirm"], advance=1, note=rec["method"])
        if not self.console.is_terminal:
            what = f"test {rec['test_acc_last']:.2f}%" if rec.get("status") == "ok" else f"FAILED ({rec.get('reason')})"
            self.console.print(f"confirm {rec['method']} seed {rec['seed']}: {what}, {rec.get('wall_s', 0):.1f}s", highlight=False)

    def confirm_ended(self) -> None:
        self._close()

    def warning(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/] {text}")

    def writing_report(self, write: Callable[[], Path]) -> Path:
        with self.console.status("writing the report"):
            index = write()
        self.console.print(f"report: {index}")
        return index

    def _close(self) -> None:
        if self._bars is not None:
            self._bars.__exit__(None, None, None)
            self._bars = None
