"""One claim's as-published protocol: the registry's claim (data set, pair, method, selection rule,
runs) and its source's preset (recipe, teacher, the method's values at the source's scale),
resolved into what the engine trains, with every known difference from the source named.

Nothing is tuned in this arm, so it trains on the whole training split; the claim's own rule
decides what each run contributes (its last or its best test epoch) and how the runs are judged.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import pandas as pd

from audit.errors import AuditError
from audit.judge.claims import load_claims
from audit.reproduce.presets import METHOD_KEYS, OVERRIDE_KEYS, Preset, preset_for
from methods.catalogue import cards

# Runs of the as-published arm when the claim itself is one run or does not say: enough for the
# verdict's t interval to see the seed spread (the audit's default confirmation seeds).
DEFAULT_RUNS = 5
# The recipe keys the engine's Recipe takes.
_RECIPE_FIELDS = ("epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "milestones", "gamma", "augment")


@dataclass
class Overrides:
    """``audit run``'s flags that shrink a reproduction (tests, smaller runs); each is a departure."""

    epochs: int | None = None
    seeds: int | None = None
    released_teacher: bool = False  # --teacher-weights was given


@dataclass
class Protocol:
    """Everything the as-published arm of one claim trains and judges with (stored in study.toml)."""

    claim_id: str
    paper: str
    source: str
    preset: str
    method: str
    dataset: str
    teacher: str
    student: str
    claimed: float
    rule: str  # the registry's selection rule
    per_run_epoch: str  # what a run contributes: its "last" or its "best" test epoch
    seeds: list[int]
    recipe: dict  # audit.engine.train.Recipe's fields (milestones as fractions of the epochs)
    teacher_recipe: dict  # the recipe a teacher trained here gets (the source trained its own so)
    normalize: list[list[float]]  # the source's per-channel mean and std
    config: dict  # every hyper-parameter of the method, in our parametrisation
    options: dict = field(default_factory=dict)
    paper_protocol: bool = False
    claimed_std: float | None = None
    claimed_runs: int | None = None
    teacher_top1: float | None = None
    teacher_released: str = ""  # where the source's released teacher is
    citations: dict[str, str] = field(default_factory=dict)
    departures: list[str] = field(default_factory=list)  # known differences from the source's run
    notes: list[str] = field(default_factory=list)  # how the claim was resolved (not departures)

    @property
    def pair(self) -> str:
        return f"{self.teacher}->{self.student}"

    def to_dict(self) -> dict:
        """As study.toml stores it (TOML has no null: unknown values are left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _number(x: object) -> float | None:
    return float(x) if x is not None and not pd.isna(x) and math.isfinite(float(x)) else None


def find_claims(ids: Sequence[str], registry: pd.DataFrame | None = None) -> list[pd.Series]:
    """The registry rows of ``ids``: an unknown id, an unmapped claim or one without a number is refused."""
    df = load_claims() if registry is None else registry
    by_id = {str(c).upper(): i for i, c in zip(df.index, df["claim_id"])}
    rows = []
    for cid in ids:
        if str(cid).upper() not in by_id:
            raise AuditError(f"unknown claim id {cid!r}; the registry's ids run {df['claim_id'].iloc[0]} to "
                             f"{df['claim_id'].iloc[-1]} (see `audit claims`)")
        row = df.loc[by_id[str(cid).upper()]]
        if row["mapping_status"] != "ok":
            raise AuditError(f"claim {row['claim_id']} cannot be reproduced here: {row['mapping_status']} "
                             f"has no counterpart in this project (see `audit claims`)")
        if _number(row["claimed_top1"]) is None:
            raise AuditError(f"claim {row['claim_id']} states no accuracy to reproduce")
        rows.append(row)
    seen = [r["claim_id"] for r in rows]
    if len(set(seen)) != len(seen):
        raise AuditError(f"claim ids repeated: {', '.join(sorted({c for c in seen if seen.count(c) > 1}))}")
    return rows


def mapped_claim_ids(registry: pd.DataFrame | None = None) -> list[str]:
    """Every claim the registry maps onto our names with a claimed number."""
    df = load_claims() if registry is None else registry
    return [str(c) for c, s, v in zip(df["claim_id"], df["mapping_status"], df["claimed_top1"]) if s == "ok" and _number(v) is not None]


def _recipe(preset: Preset, dataset: str, arch: str, epochs: int) -> tuple[dict, list[list[float]]]:
    """The engine's recipe for training ``arch`` for ``epochs`` under the preset, and its normalisation."""
    r = {**preset.recipe, **preset.recipe.get("by_dataset", {}).get(dataset, {})}
    base = int(r["epochs"])
    if "milestones" in r:  # epochs of the preset's schedule, kept as the same fractions when shortened
        milestones = [m / base for m in r["milestones"]]
    else:  # the source's int(fraction x epochs), e.g. the survey's MultiStepLR at 33 % and 66 %
        milestones = [int(f * epochs) / epochs for f in r["milestone_fractions"]]
    recipe = {k: r[k] for k in _RECIPE_FIELDS if k in r and k != "milestones"}
    recipe.update(epochs=epochs, schedule="step", milestones=milestones,
                  lr=float(r.get("lr_by_student", {}).get(arch, r["lr"])))
    return recipe, [list(r["normalize_mean"]), list(r["normalize_std"])]


def _claim_epochs(preset: Preset, claim: pd.Series) -> int:
    stated = claim.get("epochs")
    if preset.recipe.get("epochs_from_claim") and stated is not None and not pd.isna(stated):
        return int(stated)
    return int(preset.recipe["epochs"])


def resolve(claim: pd.Series, overrides: Overrides | None = None, preset: Preset | None = None) -> Protocol:
    """The as-published protocol of one registry claim."""
    o = overrides or Overrides()
    preset = preset or preset_for(str(claim["source"]))
    method, dataset = str(claim["method_id"]), str(claim["dataset_id"])
    teacher, student = str(claim["teacher_id"]), str(claim["student_id"])
    where = f"claim {claim['claim_id']} ({claim['source']})"
    if method not in preset.methods:
        raise AuditError(f"{where}: preset {preset.name} has no settings for {method}")
    if preset.datasets and dataset not in preset.datasets:
        raise AuditError(f"{where}: preset {preset.name} covers {', '.join(preset.datasets)}, not {dataset}")
    m = preset.methods[method]
    departures = [*preset.departures, *preset.departures_by_dataset.get(dataset, []), *m.get("departures", [])]
    notes: list[str] = []
    hps = {k: v for k, v in m.items() if k not in METHOD_KEYS}
    citations = {f"method {method}": m.get("cite", ""), **{f"recipe {k}": v for k, v in preset.recipe.get("cite", {}).items()}}
    for kind, key in (("by_dataset", dataset), ("by_pair", f"{teacher}->{student}")):
        over = m.get(kind, {}).get(key, {})
        hps.update({k: v for k, v in over.items() if k not in OVERRIDE_KEYS})
        if "departure" in over:
            departures.append(over["departure"])
        if "cite" in over:
            citations[f"method {method} ({key})"] = over["cite"]
    card = cards()[method]
    # Nothing is searched here: every searched dimension takes the source's value or the paper's
    # default, and the engine's own strength augmentation is off (the recipe's policy is the source's).
    config = {**card.defaults, "strength": 0.0, **hps} if "strength" in card.defaults else {**card.defaults, **hps}

    paper_epochs = _claim_epochs(preset, claim)
    if not pd.isna(claim.get("epochs")) and not preset.recipe.get("epochs_from_claim") and int(claim["epochs"]) != paper_epochs:
        departures.append(f"The claim states {int(claim['epochs'])} epochs; the preset's recipe trains {paper_epochs}.")
    if preset.recipe.get("epochs_from_claim") and pd.isna(claim.get("epochs")):
        notes.append(f"The claim states no training length: the preset's {paper_epochs} epochs.")
    epochs = o.epochs or paper_epochs
    if epochs != paper_epochs:
        departures.append(f"--epochs {epochs}: {epochs} epochs instead of the source's {paper_epochs} "
                          "(a teacher trained here too); the schedule keeps its shape.")
    recipe, normalize = _recipe(preset, dataset, student, epochs)
    teacher_recipe, _ = _recipe(preset, dataset, teacher, epochs)

    rule = str(claim["rule"])
    claimed_runs = None if pd.isna(claim.get("claimed_runs")) else int(claim["claimed_runs"])
    per_run = "best" if rule == "best_epoch_test" else (preset.per_run_epoch or "last")
    if per_run == "best" and rule != "best_epoch_test":
        notes.append(f"Each run contributes its best test epoch, as {preset.name}'s code keeps it (registry rule {rule}).")
    runs = claimed_runs if claimed_runs is not None and claimed_runs >= 2 else DEFAULT_RUNS
    if claimed_runs is None:
        notes.append(f"The claim does not say how many runs it took: {DEFAULT_RUNS} seeds.")
    elif claimed_runs < 2:
        notes.append(f"The claim is a single run: {DEFAULT_RUNS} seeds here, so the verdict sees the seed spread.")
    if o.seeds is not None and o.seeds != runs:
        departures.append(f"--seeds {o.seeds}: {o.seeds} runs instead of {runs}.")
        runs = o.seeds
    if not o.released_teacher and card.needs_teacher:
        departures.append(f"The teacher is trained here with the preset's recipe, not the source's released one "
                          f"({preset.teacher.get('released', 'not stated')}); give it with --teacher-weights.")
    return Protocol(
        claim_id=str(claim["claim_id"]), paper=str(claim["paper"]), source=str(claim["source"]), preset=preset.name,
        method=method, dataset=dataset, teacher=teacher, student=student, claimed=float(claim["claimed_top1"]),
        rule=rule, per_run_epoch=per_run, seeds=list(range(1, runs + 1)), recipe=recipe,
        teacher_recipe=teacher_recipe, normalize=normalize, config=config, options=dict(m.get("options", {})),
        paper_protocol=bool(m.get("paper_protocol", False)), claimed_std=_number(claim.get("claimed_std")),
        claimed_runs=claimed_runs, teacher_top1=_number(claim.get("teacher_top1")),
        teacher_released=str(preset.teacher.get("released", "")),
        citations={k: v for k, v in {**citations, "teacher": preset.teacher.get("cite", "")}.items() if v},
        departures=departures, notes=notes,
    )

