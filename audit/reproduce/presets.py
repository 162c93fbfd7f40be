"""Protocol presets: one declarative file per claim source, ``studies/presets/<name>.toml``.

A preset holds what the source trained its claims with, each number with the citation it was read
from: the recipe (``[recipe]``, per data set in ``[recipe.by_dataset.<data set>]``), the
teacher it released (``[teacher]``), each method's values in OUR parametrisation
(``[methods.<method>]``, converted where our loss is scaled otherwise: the catalogue's
``convention`` says how; per pair in ``by_pair."<teacher>-><student>"``, per data set in
``by_dataset.<data set>``) and the known differences between our run and the source's
(``departures``, which the report names). Torch-free: ``audit reproduce --dry-run`` and the
report read presets without loading any model code.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from audit.errors import AuditError
from methods.catalogue import cards, lookup

PRESETS_DIR = Path(__file__).resolve().parents[2] / "studies" / "presets"
# The recipe's keys, as ``audit.engine.train.Recipe`` takes them after conversion (milestones in
# epochs become fractions), plus the normalisation and where the numbers came from.
RECIPE_KEYS = ("epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "milestones",
               "milestone_fractions", "gamma", "augment", "normalize_mean", "normalize_std")
RECIPE_EXTRA = ("epochs_from_claim", "lr_by_student", "by_dataset", "cite")
# A method table's keys that are not hyper-parameters.
METHOD_KEYS = ("cite", "paper_protocol", "options", "departures", "by_pair", "by_dataset")
OVERRIDE_KEYS = ("cite", "departure")  # an override table's keys that are not hyper-parameters
PER_RUN_EPOCHS = ("last", "best")
TOP_KEYS = ("name", "title", "sources", "datasets", "per_run_epoch", "runs", "departures",
            "departures_by_dataset", "cite", "recipe", "teacher", "methods")


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    sources: tuple[str, ...]  # the claims' source repositories (owner/name) it covers
    datasets: tuple[str, ...]
    recipe: dict
    teacher: dict
    methods: dict[str, dict]  # by our method name
    per_run_epoch: str | None = None  # what one run contributes: its last or its best test epoch
    runs: int | None = None  # runs the source reports per number, where it says
    departures: tuple[str, ...] = ()
    departures_by_dataset: dict[str, list[str]] = field(default_factory=dict)
    cite: dict[str, str] = field(default_factory=dict)
    path: Path | None = None


def repository(source: str) -> str:
    """``owner/name`` of a registry ``source`` such as ``HobbitLong/RepDistiller@b84f547:README.md``."""
    return source.split(":", 1)[0].split("@", 1)[0].strip()


def _check_hps(where: str, method: str, table: dict, reserved: tuple[str, ...]) -> None:
    allowed = set(cards()[method].defaults)
    bad = sorted(set(table) - allowed - set(reserved))
    if bad:
        raise AuditError(f"{where}: {bad} are not hyper-parameters of {method}; allowed: {', '.join(sorted(allowed))}")


def _check_method(where: str, name: str, table: dict) -> str:
    method = lookup(name)
    if method is None or method != name:
        raise AuditError(f"{where}: unknown method {name!r}; use the catalogue's names (audit methods)")
    if not isinstance(table, dict):
        raise AuditError(f"{where}: [methods.{name}] must be a table")
    _check_hps(where, method, table, METHOD_KEYS)
    options = table.get("options", {})
    stray = sorted(set(options) - set(cards()[method].options))
    if stray:
        raise AuditError(f"{where}: {method} has no option(s) {stray}; allowed: {', '.join(cards()[method].options) or 'none'}")
    for kind in ("by_pair", "by_dataset"):
        for key, override in table.get(kind, {}).items():
            if kind == "by_pair" and "->" not in key:
                raise AuditError(f"{where}: by_pair key {key!r} must read '<teacher>-><student>'")
            _check_hps(f"{where} {kind}.{key}", method, override, OVERRIDE_KEYS)
    return method


def read_preset(path: Path) -> Preset:
    """One preset file, checked: an unknown key, method or hyper-parameter is one clear line."""
    where = f"preset {path.name}"
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AuditError(f"cannot read {where}: {exc}") from None
    stray = sorted(set(raw) - set(TOP_KEYS))
    if stray:
        raise AuditError(f"{where}: unknown keys {stray}; allowed: {', '.join(TOP_KEYS)}")
    if raw.get("name") != path.stem:
        raise AuditError(f"{where}: name = {raw.get('name')!r} must be the file's name {path.stem!r}")
    recipe = dict(raw.get("recipe", {}))
    bad = sorted(set(recipe) - set(RECIPE_KEYS) - set(RECIPE_EXTRA))
    for over in recipe.get("by_dataset", {}).values():
        bad += sorted(set(over) - set(RECIPE_KEYS))
    if bad:
        raise AuditError(f"{where}: unknown [recipe] keys {bad}; allowed: {', '.join(RECIPE_KEYS + RECIPE_EXTRA)}")
    if ("milestones" in recipe) == ("milestone_fractions" in recipe):
        raise AuditError(f"{where}: [recipe] needs milestones (epochs) or milestone_fractions, not both")
    per_run = raw.get("per_run_epoch")
    if per_run is not None and per_run not in PER_RUN_EPOCHS:
        raise AuditError(f"{where}: per_run_epoch = {per_run!r}; allowed: {', '.join(PER_RUN_EPOCHS)}")
    methods = {_check_method(where, n, t): dict(t) for n, t in raw.get("methods", {}).items()}
    if not raw.get("sources"):
        raise AuditError(f"{where}: sources must list the claim repositories it covers")
    return Preset(
        name=raw["name"], title=str(raw.get("title", raw["name"])), sources=tuple(raw["sources"]),
        datasets=tuple(raw.get("datasets", ())), recipe=recipe, teacher=dict(raw.get("teacher", {})), methods=methods,
        per_run_epoch=per_run, runs=raw.get("runs"), departures=tuple(raw.get("departures", ())),
        departures_by_dataset={k: list(v) for k, v in raw.get("departures_by_dataset", {}).items()},
        cite=dict(raw.get("cite", {})), path=Path(path),
    )


@cache
def load_presets(folder: Path = PRESETS_DIR) -> dict[str, Preset]:
    """Every preset in ``folder``, by name; two presets claiming one source are refused."""
    presets = {p.stem: read_preset(p) for p in sorted(Path(folder).glob("*.toml"))}
    owner: dict[str, str] = {}
    for p in presets.values():
        for s in p.sources:
            if s.lower() in owner:
                raise AuditError(f"presets {owner[s.lower()]} and {p.name} both cover source {s!r}")
            owner[s.lower()] = p.name
    return presets


def preset_for(source: str, folder: Path = PRESETS_DIR) -> Preset:
    """The preset of a claim's source; none is one line naming the repository and the presets."""
    repo = repository(source).lower()
    for p in load_presets(folder).values():
        if repo in (s.lower() for s in p.sources):
            return p
    known = sorted(s for p in load_presets(folder).values() for s in p.sources)
    raise AuditError(f"no protocol preset covers the claim source {repository(source)!r} (studies/presets/ covers "
                     f"{', '.join(known)})")
