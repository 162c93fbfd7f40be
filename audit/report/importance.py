"""Hyper-parameter importances (fANOVA) of one method's search, from the study's Optuna storage
when it opens, else from the journal."""
from __future__ import annotations

import warnings

import optuna

from audit.folder import StudyFolder
from audit.search.storage import method_study, open_storage, own_storage_file
from methods.catalogue import card

# fANOVA on fewer completed trials fits a forest to noise; below this the report says so.
MIN_TRIALS_FOR_IMPORTANCE = 5


def evaluator() -> optuna.importance.FanovaImportanceEvaluator:
    """The evaluator of every importance in the report (seeded: the same folder, the same numbers)."""
    return optuna.importance.FanovaImportanceEvaluator(seed=0)


class Computed(optuna.importance.BaseImportanceEvaluator):
    """Hands Optuna's importance plot the importances the report computed already: fANOVA fits a
    forest per hyper-parameter, the costliest part of the report, so it runs once per method."""

    def __init__(self, importances: dict[str, float]) -> None:
        self.importances = dict(importances)

    def evaluate(self, study: optuna.Study, params: list[str] | None = None, *, target=None) -> dict[str, float]:  # noqa: ANN001
        return {k: v for k, v in self.importances.items() if params is None or k in params}


def optuna_study(folder: StudyFolder, method: str) -> optuna.Study:
    """The method's Optuna study: from the folder's storage when it opens, else rebuilt in memory
    from the journal (a moved folder, a remote storage, a database locked by a running study)."""
    try:
        if own_storage_file(folder.path).is_file() and not folder.study.get("storage"):
            # Open the study of this folder, wherever it now lies.
            ostudy = method_study(open_storage(None, folder.path), folder.name, method)
            if ostudy is not None and any(t.state == optuna.trial.TrialState.COMPLETE for t in ostudy.trials):
                return ostudy
    except Exception:  # noqa: BLE001 - fall back on the journal, which always exists
        pass
    # The spaces the study searched; a folder made before they were kept has the catalogue's.
    space = (folder.spaces() or {}).get(method) or card(method).search_space()
    ostudy = optuna.create_study(direction="maximize")
    for r in folder.search(method):
        if r.get("status") != "ok":
            continue
        params = {k: v for k, v in (r.get("config") or {}).items() if k in space}
        ostudy.add_trial(optuna.trial.create_trial(params=params, distributions={k: space[k] for k in params},
                                                   value=float(r.get("val_acc_last", r.get("val_acc")))))
    return ostudy


def importance_table(folder: StudyFolder, method: str) -> tuple[dict[str, float] | None, str, optuna.Study | None]:
    """(importances, why not, Optuna study) of one method's search."""
    n_ok = sum(1 for r in folder.search(method) if r.get("status") == "ok")
    if n_ok < MIN_TRIALS_FOR_IMPORTANCE:
        return None, f"{n_ok} completed trial(s); importances need at least {MIN_TRIALS_FOR_IMPORTANCE}", None
    try:
        ostudy = optuna_study(folder, method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(ostudy, evaluator=evaluator())
    except Exception as exc:  # noqa: BLE001 - e.g. every trial with the same values
        return None, f"not computable ({type(exc).__name__}: {exc})", None
    if not imp:
        return None, "no hyper-parameter varied", None
    return dict(imp), "", ostudy
