"""Per-method numbers several sections share: the confirmation runs and search trials that
finished, read from the study folder's journal."""
from __future__ import annotations

from dataclasses import dataclass

from audit.folder import StudyFolder
from audit.report.format import finite


@dataclass
class Runs:
    """Confirmation runs (status ok) and search trials (status ok) of one method."""

    test_last: list[float]  # last-epoch test accuracy of each confirmation run, in seed order
    test_curves: list[list[float]]
    config: dict  # the configuration the confirmation runs re-trained (best on validation)
    search_val: list[float]
    search_configs: list[dict]


def collect_runs(folder: StudyFolder) -> dict[str, Runs]:
    out: dict[str, Runs] = {}
    for m in folder.all_methods:
        conf = [r for r in folder.confirm(m) if r.get("status") == "ok" and finite(r.get("test_acc_last"))]
        conf.sort(key=lambda r: (r.get("seed") is None, r.get("seed") if isinstance(r.get("seed"), int) else 0))
        search = [r for r in folder.search(m) if r.get("status") == "ok" and finite(r.get("val_acc_last", r.get("val_acc")))]
        out[m] = Runs(
            test_last=[float(r["test_acc_last"]) for r in conf],
            test_curves=[list(r.get("test_curve") or [r["test_acc_last"]]) for r in conf],
            config=dict(conf[0].get("config") or {}) if conf else {},
            search_val=[float(r.get("val_acc_last", r.get("val_acc"))) for r in search],
            search_configs=[dict(r.get("config") or {}) for r in search],
        )
    return out
