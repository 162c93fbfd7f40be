"""Section 6, budget and compute: how far each method got against the budget, and what each
trained (epochs, images, FLOPs, wall time), flagging any method that used more."""
from __future__ import annotations

import pandas as pd

from audit.budget import check_equal
from audit.folder import StudyFolder
from audit.report import figures
from audit.report.document import Section, Table
from audit.report.format import fmt, fmt_big
from methods.catalogue import BASELINE


def progress_table(prog: pd.DataFrame) -> Table:
    rows = [[r.method, f"{r.search_trials} / {r.trials_budget}", str(r.search_failed), f"{r.confirm_runs} / {r.seeds_budget}",
             r.state] for r in prog.itertuples()]
    return Table(["method", "search trials", "failed trials", "confirmation runs", "state"], rows, "progress.csv", prog,
                 ["" if r[-1] == "complete" else "flagged" for r in rows], caption="Runs recorded against the budget")


def _total(recs: list[dict], key: str) -> float:
    return float(sum(r.get(key) or 0 for r in recs))


def _compute(folder: StudyFolder, method: str) -> dict:
    """What one method's finished runs trained, in total and per run."""
    recs = [r for r in folder.records if r.get("method") == method and r.get("status") == "ok"]
    s, c = [r for r in recs if r.get("phase") == "search"], [r for r in recs if r.get("phase") == "confirm"]
    n = max(len(recs), 1)
    return {
        "trials": len(folder.search(method)), "runs": len(recs), "epochs_per_run": _total(recs, "epochs") / n,
        "pretrain_epochs": _total(recs, "pretrain_epochs"), "images": _total(recs, "images"),
        "images_per_run": _total(recs, "images") / n, "flops": _total(recs, "flops"), "flops_per_run": _total(recs, "flops") / n,
        "wall_s": _total(recs, "wall_s"),
        "images_split": (_total(s, "images"), _total(c, "images")),
        "wall_split": (_total(s, "wall_s"), _total(c, "wall_s")),
    }


def budget_section(folder: StudyFolder, prog: pd.DataFrame, colour: dict[str, str]) -> Section:
    sec = Section("budget", 6, "Budget and compute", short="Budget & compute")
    sec.table(progress_table(prog))
    methods = [m for m in folder.all_methods if folder.search(m) or folder.confirm(m)]
    if not methods:
        sec.warn("No run has finished yet.")
        return sec

    stats_by = {m: _compute(folder, m) for m in methods}
    least_images = min(v["images_per_run"] for v in stats_by.values() if v["runs"]) if any(v["runs"] for v in stats_by.values()) else 0
    least_epochs = min((v["epochs_per_run"] for v in stats_by.values() if v["runs"]), default=0)
    base_flops = stats_by.get(BASELINE, {}).get("flops_per_run", 0)
    rows, frame, classes = [], [], []
    for m, v in stats_by.items():
        flags = []
        if v["pretrain_epochs"] > 0:
            flags.append(f"{v['pretrain_epochs']:.0f} extra pre-training epochs (paper protocol)")
        if v["runs"] and least_images and v["images_per_run"] > 1.01 * least_images:
            flags.append(f"{v['images_per_run'] / least_images:.2f}x the images per run of the least")
        if v["runs"] and least_epochs and v["epochs_per_run"] > least_epochs + 1e-9:
            flags.append(f"{v['epochs_per_run']:.1f} epochs per run vs {least_epochs:.1f}")
        ratio = f"{v['flops_per_run'] / base_flops:.2f}x" if base_flops else "—"
        rows.append([m, f"{v['trials']} / {folder.trials}", str(v["runs"]), f"{v['epochs_per_run']:.1f}",
                     f"{v['pretrain_epochs']:.0f}", fmt_big(v["images"]), fmt_big(v["flops"], "FLOP"), ratio,
                     f"{v['wall_s'] / 60:.1f}", "; ".join(flags) or "—"])
        classes.append("flagged" if flags else "")
        frame.append({"method": m, **{k: val for k, val in v.items() if not k.endswith("_split")}, "flags": "; ".join(flags)})
    sec.table(Table(["method", "search trials", "runs (ok)", "epochs per run", "pre-training epochs", "images",
                     "FLOPs", f"FLOPs per run vs {BASELINE}", "wall time (min)", "used more"], rows, "budget.csv",
                    pd.DataFrame(frame), classes))
    for w in check_equal(folder.records, allow_unequal=True):  # never refuses: the report shows what is there
        sec.warn(w)
    sec.note("Flags mark a larger training budget (pre-training epochs, more images or epochs per run). FLOPs "
             "include the teacher's forward passes, which every KD method pays, so they are shown but not flagged. Wall time "
             "depends on the machine and on what else ran on it.")
    if folder.timings:
        sec.p("Study phases: " + ", ".join(f"{k.removesuffix('_s')} {fmt(v, '.0f')} s" for k, v in folder.timings.items()) + ".")
    sec.figure("budget", "Budget and compute", "Bars of equal length mean an equal budget; a longer bar in the left "
               "panel is a method that trained on more images than the others.",
               lambda: figures.budget(methods, {m: stats_by[m]["images_split"] for m in methods},
                                      {m: stats_by[m]["wall_split"] for m in methods}, colour))
    return sec
