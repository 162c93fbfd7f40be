"""The claims registry: published KD accuracies mapped onto this project's names.

``studies/claims/registry.csv`` is built from the shared ``published_claims.csv`` by
``build_registry`` (``python -m audit.judge.claims``). Every source row and column is kept verbatim;
normalised columns are appended:

``method_id``, ``teacher_id``, ``student_id``, ``dataset_id``
    our names; empty where the paper's name has no counterpart here.
``rule``
    how the claimed number was selected: one of ``RULES`` (``best_of_k_seeds``: the best of k
    runs). A source that states no rule is recorded as ``last_epoch`` (the only rule that does not
    peek at the test set, and the one the CRD benchmark code uses) with ``rule_basis`` saying it was
    assumed; its verdict is then given under both last-epoch and best-epoch selection
    (``audit.judge.published``).
``claimed_std``, ``claimed_runs``
    from the selection column (``mean_of_5``) or the notes (``single run``, ``± 0.2``).
``epochs``, ``third_party_reproduced``
    the training length and someone else's reproduction, where the notes give them.
``mapping_status``
    ``ok`` or ``unmapped: method 'X', teacher 'Y'``: unmapped rows are kept, never dropped.

Architectures are mapped only for data sets we can run (our models are the CIFAR-style ones,
so an ImageNet ``ResNet18`` is not our ``resnet18``), and the seed survey's (Ruffy & Chahal)
own ``ResNetSmall``/WRN variants get their own ``survey_*`` names.
"""
from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from audit.errors import AuditError, unknown
from methods.catalogue import cards
from methods.catalogue import key as _key

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_PATH = REPO_ROOT.parent / "shared" / "claims" / "published_claims.csv"
REGISTRY_PATH = REPO_ROOT / "studies" / "claims" / "registry.csv"

SOURCE_COLUMNS = ("claim_id", "paper", "method", "dataset", "teacher", "student", "claimed_top1",
                  "teacher_top1", "baseline_student_top1", "selection", "source", "notes")
ADDED_COLUMNS = ("method_id", "teacher_id", "student_id", "dataset_id", "rule", "rule_basis",
                 "claimed_std", "claimed_runs", "epochs", "third_party_reproduced", "mapping_status")
_FLOAT_COLUMNS = ("claimed_top1", "teacher_top1", "baseline_student_top1", "claimed_std",
                  "third_party_reproduced")
_INT_COLUMNS = ("claimed_runs", "epochs")

RULES = ("last_epoch", "best_epoch_test", "mean_of_k", "median_of_k", "best_of_k_seeds", "single_run")
ASSUMED_RULE = "last_epoch"

# A paper's method name means one of ours through the method catalogue's names and aliases (the
# KD zoo's "ST" is Hinton's soft targets, torchdistill's "KR" the knowledge review); its "Logits"
# (Ba & Caruana's regression) has no counterpart and stays unmapped.
_METHOD_ALIASES: dict[str, str] = {_key(s): c.name for c in cards().values() for s in (c.name, *c.aliases)}

_DATASETS: dict[str, str] = {"cifar10": "cifar10", "cifar100": "cifar100", "digits": "digits",
                             "mnist": "mnist", "fashionmnist": "fashion_mnist"}

# CIFAR-style architectures of the CRD/RepDistiller benchmark zoo (resnet50 is its CIFAR variant).
_ARCHS: dict[str, str] = {f"resnet{d}": f"resnet{d}" for d in (8, 14, 20, 26, 32, 44, 56, 110)}
_ARCHS.update({"resnet8x4": "resnet8x4", "resnet32x4": "resnet32x4", "resnet50": "resnet50",
               "wrn161": "wrn_16_1", "wrn162": "wrn_16_2", "wrn401": "wrn_40_1", "wrn402": "wrn_40_2",
               "mobilenetv2": "mobilenetv2",
               "shufflenetv1": "shufflenet_v1", "shufflev1": "shufflenet_v1",
               "shufflenetv2": "shufflenet_v2", "shufflev2": "shufflenet_v2"})
_ARCHS.update({f"vgg{d}": f"vgg{d}" for d in (8, 11, 13, 16, 19)})
# The seed survey's own variants (ResNetSmall: 3->64 stem, no ReLU after the add; its WRN).
_SURVEY_ARCHS: dict[str, str] = {"resnet8": "survey_resnet8", "resnet20": "survey_resnet20",
                                 "resnet26": "survey_resnet26", "resnet18": "survey_resnet18",
                                 "wrn101": "survey_wrn_10_1", "wrn164": "survey_wrn_16_4"}
ARCH_IDS = tuple(sorted(set(_ARCHS.values()) | set(_SURVEY_ARCHS.values())))
# What a user may type to mean one of our architectures: a paper's name or our id.
_ARCH_QUERY: dict[str, str] = {**_ARCHS, **{_key(a): a for a in ARCH_IDS}}
_DATASET_QUERY: dict[str, str] = {**_DATASETS, **{_key(d): d for d in _DATASETS.values()}}


def _is_survey(paper: str, source: str) -> bool:
    return "ruffy" in paper.lower() or source.lower().startswith("karanchahal/distiller")


# ---------------------------------------------------------------------------------------------
# normalising one source row
# ---------------------------------------------------------------------------------------------

_NUM = r"(\d+(?:\.\d+)?)"


def _parse_rule(selection: str, notes: str) -> tuple[str, str, int | None]:
    """(rule, rule_basis, runs) from the selection column, falling back on the notes."""
    sel = selection.strip().lower()
    runs: int | None = None
    if sel in ("last_epoch", "best_epoch_test"):
        rule, basis = sel, "stated"
    elif m := re.fullmatch(r"(mean|median)_of_(\d+)", sel):
        rule, basis, runs = f"{m.group(1)}_of_k", "stated", int(m.group(2))
    elif m := re.fullmatch(r"best_of_(\d+)(?:_seeds|_runs)?", sel):
        rule, basis, runs = "best_of_k_seeds", "stated", int(m.group(1))
    elif sel == "single_run":
        rule, basis, runs = "single_run", "stated", 1
    else:
        said = f"source says {selection!r}" if sel and sel != "unspecified" else "source states no rule"
        rule, basis = ASSUMED_RULE, f"assumed ({said})"
        if m := re.search(r"\bbest of (\d+) (?:runs|seeds|trials)\b", notes.lower()):
            rule, basis, runs = "best_of_k_seeds", "stated in the notes", int(m.group(1))
    if runs is None:
        text = notes.lower()
        if m := re.search(r"\b(?:mean|median|average) of (\d+)\b", text):
            runs = int(m.group(1))
        elif m := re.search(r"\b(\d+) (?:runs|seeds|trials)\b", text):
            runs = int(m.group(1))
        elif re.search(r"\bsingle run\b", text):
            runs = 1
    return rule, basis, runs


def _parse_std(notes: str) -> float | None:
    m = (re.search(r"(?:±|\+/-|\+-)\s*" + _NUM, notes)
         or re.search(r"\b(?:std|s\.d\.|sd)\b\.?\s*(?:=|:|of)?\s*" + _NUM, notes, re.IGNORECASE))
    return float(m.group(1)) if m else None


def _parse_epochs(*texts: str) -> int | None:
    for text in texts:
        if m := re.search(r"\b(\d+)\s*epochs\b", text, re.IGNORECASE):
            return int(m.group(1))
    return None


def _parse_reproduced(notes: str) -> float | None:
    m = re.search(r"reproduced\s*=\s*" + _NUM, notes, re.IGNORECASE)
    return float(m.group(1)) if m else None


def _fmt(x: float | int | None) -> str:
    return "" if x is None else (str(x) if isinstance(x, int) else f"{x:g}")


def _normalise_row(row: dict[str, str]) -> dict[str, str]:
    unmapped: list[str] = []

    def look(field: str, table: dict[str, str]) -> str:
        raw = row[field].strip()
        got = table.get(_key(raw), "") if raw else ""
        if not got:
            unmapped.append(f"{field} {raw!r}")
        return got

    method = look("method", _METHOD_ALIASES)
    dataset = look("dataset", _DATASETS)
    if dataset:
        archs = _SURVEY_ARCHS if _is_survey(row["paper"], row["source"]) else _ARCHS
        teacher, student = look("teacher", archs), look("student", archs)
    else:  # e.g. ImageNet's ResNet18 is not our CIFAR-style resnet18
        teacher = student = ""
        unmapped += [f"teacher {row['teacher'].strip()!r}", f"student {row['student'].strip()!r}"]
    rule, basis, runs = _parse_rule(row["selection"], row["notes"])
    return {
        "method_id": method, "teacher_id": teacher, "student_id": student, "dataset_id": dataset,
        "rule": rule, "rule_basis": basis, "claimed_std": _fmt(_parse_std(row["notes"])),
        "claimed_runs": _fmt(runs), "epochs": _fmt(_parse_epochs(row["notes"], row["source"])),
        "third_party_reproduced": _fmt(_parse_reproduced(row["notes"])),
        "mapping_status": "ok" if not unmapped else "unmapped: " + ", ".join(unmapped),
    }


def normalise(source: pd.DataFrame) -> pd.DataFrame:
    """Append the normalised columns to a frame of source rows (all strings)."""
    missing = [c for c in SOURCE_COLUMNS if c not in source.columns]
    if missing:
        raise AuditError(f"claims file lacks column(s) {', '.join(missing)}; expected {', '.join(SOURCE_COLUMNS)}")
    ids = source["claim_id"].str.strip()
    if (ids == "").any():
        raise AuditError(f"claims file has {int((ids == '').sum())} row(s) without a claim_id")
    dup = sorted(ids[ids.duplicated()].unique())
    if dup:
        raise AuditError(f"claims file repeats claim_id(s) {', '.join(dup)}")
    added = pd.DataFrame([_normalise_row(r) for r in source[list(SOURCE_COLUMNS)].to_dict("records")],
                         index=source.index, columns=list(ADDED_COLUMNS))
    return pd.concat([source.drop(columns=[c for c in ADDED_COLUMNS if c in source.columns]), added], axis=1)


def _read_text(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise AuditError(f"claims file not found: {path}")
    # Everything as text, so the source's own spelling ('N/A', '90.8') survives a round trip.
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def unmapped_names(df: pd.DataFrame) -> Counter[str]:
    """How many claims each unmapped name (e.g. "method 'Logits'") appears in."""
    counts: Counter[str] = Counter()
    for status in df["mapping_status"]:
        if status != "ok":
            counts.update(re.findall(r"\w+ '[^']*'|\w+ \"[^\"]*\"", status.removeprefix("unmapped: ")))
    return counts


def build_registry(src: Path | str = SOURCE_PATH, dst: Path | str = REGISTRY_PATH) -> pd.DataFrame:
    """Build the registry CSV at ``dst`` from the shared claims file ``src``; return it loaded.

    Every source row is kept; names without a mapping are reported in ``mapping_status`` and in
    one ``UserWarning`` listing each unmapped name with its number of claims.
    """
    table = normalise(_read_text(Path(src)))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(dst, index=False, lineterminator="\n")
    names = unmapped_names(table)
    if names:
        n_rows = int((table["mapping_status"] != "ok").sum())
        listing = ", ".join(f"{name} ({count})" for name, count in sorted(names.items()))
        warnings.warn(f"{n_rows} of {len(table)} claims keep names with no mapping here: {listing}",
                      UserWarning, stacklevel=2)
    return _typed(table)


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    df = table.copy()
    for col in _FLOAT_COLUMNS:
        df[col] = pd.to_numeric(df[col].replace("", None), errors="coerce").astype(float)
    for col in _INT_COLUMNS:
        df[col] = pd.to_numeric(df[col].replace("", None), errors="coerce").astype("Int64")
    return df


def load_claims(path: Path | str | None = None) -> pd.DataFrame:
    """The registry as a DataFrame (numbers as floats, 'N/A' as NaN, runs and epochs as Int64).

    ``path`` defaults to ``studies/claims/registry.csv``; a file in the shared source format
    (without the normalised columns) is normalised on the fly.
    """
    table = _read_text(Path(path) if path is not None else REGISTRY_PATH)
    if any(c not in table.columns for c in ADDED_COLUMNS):
        table = normalise(table)
    return _typed(table)


# ---------------------------------------------------------------------------------------------
# finding claims
# ---------------------------------------------------------------------------------------------


def _match(df: pd.DataFrame, field: str, query: str, table: dict[str, str]) -> pd.Series:
    """Rows whose ``field`` is ``query`` as our id or as the paper's name."""
    q = _key(query)
    ids = {table[q]} if q in table else set()
    return df[f"{field}_id"].isin(ids) | (df[field].map(_key) == q)


def filter_claims(df: pd.DataFrame, *, dataset: str | None = None, method: str | None = None,
                  teacher: str | None = None, student: str | None = None,
                  paper: str | None = None) -> pd.DataFrame:
    """Claims matching every given filter. Names may be our ids (``feature_kd``, ``wrn_40_2``)
    or the paper's spelling (``FitNet``, ``WRN-40-2``); ``paper`` is a case-insensitive
    substring of the paper or source (``Tian``, ``mdistiller``)."""
    mask = pd.Series(True, index=df.index)
    if dataset is not None:
        mask &= _match(df, "dataset", dataset, _DATASET_QUERY)
    if method is not None:
        mask &= _match(df, "method", method, _METHOD_ALIASES)
    if teacher is not None:
        mask &= _match(df, "teacher", teacher, _ARCH_QUERY)
    if student is not None:
        mask &= _match(df, "student", student, _ARCH_QUERY)
    if paper is not None:
        p = paper.lower()
        mask &= df["paper"].str.lower().str.contains(p, regex=False) | df["source"].str.lower().str.contains(p, regex=False)
    return df[mask]


def matching_claims(df: pd.DataFrame, method: str, dataset: str, teacher: str, student: str, *,
                    epochs: int | None = None) -> pd.DataFrame:
    """The claims a study of (method, dataset, teacher -> student) should be judged against:
    same ids exactly (aliases are resolved first), a claimed number present, and, when
    ``epochs`` is given, the same training length or none stated."""
    def resolve(value: str, table: dict[str, str]) -> str:
        return table.get(_key(value), value)

    mask = ((df["method_id"] == resolve(method, _METHOD_ALIASES))
            & (df["dataset_id"] == resolve(dataset, _DATASET_QUERY))
            & (df["teacher_id"] == resolve(teacher, _ARCH_QUERY))
            & (df["student_id"] == resolve(student, _ARCH_QUERY))
            & df["claimed_top1"].notna())
    if epochs is not None:
        mask &= df["epochs"].isna() | (df["epochs"] == epochs)
    return df[mask]


def reproduced_value(per_epoch_test_acc: Sequence[Sequence[float]], rule: str) -> list[float]:
    """The number each confirmation run contributes under a claim's selection rule.

    ``per_epoch_test_acc[i]`` is run i's test accuracy after every epoch. ``best_epoch_test``
    takes each run's best epoch (the test set picks it, as the paper did); every other rule
    takes the last epoch. ``mean_of_k``/``median_of_k``/``best_of_k_seeds``/``single_run`` are
    statistics of the claim's runs, which the verdict models (``audit.judge.claim_model``).
    """
    if rule not in RULES:
        raise unknown("selection rule", rule, RULES)
    if len(per_epoch_test_acc) == 0:
        raise AuditError("no runs: each confirmation run needs its per-epoch test accuracy")
    out = []
    for i, run in enumerate(per_epoch_test_acc):
        values = [float(v) for v in run]
        if not values:
            raise AuditError(f"run {i} has no per-epoch test accuracy")
        if not all(math.isfinite(v) for v in values):
            raise AuditError(f"run {i} has a non-finite test accuracy")
        out.append(max(values) if rule == "best_epoch_test" else values[-1])
    return out


if __name__ == "__main__":
    built = build_registry()
    print(f"wrote {REGISTRY_PATH} ({len(built)} claims, "
          f"{int((built['mapping_status'] == 'ok').sum())} mapped)")
