"""The reproducibility report of a study folder: ``index.html`` (one self-contained page),
``report.md`` (the same tables, for pasting into a review or an issue), ``tables/*.csv`` and
``figures/*.png``.

Everything is read from the study folder itself, the journal (``trials.jsonl``) first, so a
study that is still running or was interrupted can be reported: the page says how far it got.
Sections, in order: verdicts, method ranking, equal-budget curves, hyper-parameter
sensitivity, cross-architecture matrix, budget and compute, provenance.
"""
from __future__ import annotations

import base64
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import time
import tomllib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audit import folder as journal
from audit.errors import AuditError, unknown
from audit.judge.claim import DEFAULT_MARGIN, judge_claim
from audit.judge.relative import compare_methods
from audit.judge.multiple import ADJUSTMENTS, adjust_pvalues
from audit.judge.tuning import RANK_CI, expected_max, expected_max_std, mean_ci

REFERENCES = ("nokd", "kd")
SHARED_HPS = ("temperature", "alpha", "strength")
# fANOVA on fewer completed trials fits a forest to noise; below this the report says so.
MIN_TRIALS_FOR_IMPORTANCE = 5
CORRECTIONS = {"bh": "Benjamini-Hochberg (false discovery rate)", "holm": "Holm (family-wise error rate)"}
TEMPLATES = Path(__file__).parent / "templates"
REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# the study folder
# ---------------------------------------------------------------------------------------------


@dataclass
class StudyFolder:
    """What a study folder holds, read without assuming the study finished."""

    path: Path
    toml_text: str
    spec: dict
    records: list[dict]
    teacher: dict | None
    timings: dict | None
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec.get("name", self.path.name))

    @property
    def methods(self) -> list[str]:
        """The audited methods: the study's own list without the references, unless it audits
        only references (e.g. ``--method kd``)."""
        listed = [str(m) for m in self.spec.get("methods", [])]
        return [m for m in listed if m not in REFERENCES] or listed

    @property
    def all_methods(self) -> list[str]:
        """References first, then the study's methods, then any other method the journal holds."""
        listed = [*REFERENCES, *[str(m) for m in self.spec.get("methods", [])]]
        return list(dict.fromkeys([*listed, *(str(r.get("method")) for r in self.records)]))

    @property
    def trials(self) -> int:
        return int(self.spec.get("trials", 0))

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.spec.get("seeds", [])]

    @property
    def epochs(self) -> int | None:
        e = self.spec.get("recipe", {}).get("epochs")
        return int(e) if e is not None else None

    def get(self, key: str, default: str = "?") -> str:
        return str(self.spec.get(key, default))

    def search(self, method: str) -> list[dict]:
        return [r for r in self.records if r.get("method") == method and r.get("phase") == "search"]

    def confirm(self, method: str) -> list[dict]:
        return [r for r in self.records if r.get("method") == method and r.get("phase") == "confirm"]


def load_study(study_dir: Path | str) -> StudyFolder:
    """Read a study folder; a folder without a readable ``study.toml`` is not a study."""
    path = Path(study_dir)
    if not path.is_dir():
        raise AuditError(f"{str(path)!r} is not a folder; give a study folder, e.g. reports/<name>")
    toml_path = path / "study.toml"
    if not toml_path.is_file():
        raise AuditError(f"{str(path)!r} is not a study folder (no study.toml); give reports/<name> as written by `audit run`")
    try:
        text = toml_path.read_text()
        spec = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AuditError(f"cannot read {str(toml_path)!r}: {exc}") from None
    problems: list[str] = []
    records = [r for r in journal.read(path) if isinstance(r, dict) and "method" in r and "phase" in r]

    def optional_json(name: str) -> dict | None:
        p = path / name
        if not p.is_file():
            return None
        try:
            value = json.loads(p.read_text())
            return value if isinstance(value, dict) else None
        except (OSError, ValueError) as exc:
            problems.append(f"{name} could not be read ({type(exc).__name__}); its part of the report is missing")
            return None

    return StudyFolder(path, text, spec, records, optional_json("teacher.json"), optional_json("timings.json"), problems)


# ---------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt(x: object, spec: str = ".2f") -> str:
    """A number for a table; missing or non-finite values are a dash."""
    if x is None:
        return "—"
    if isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool):
        if not math.isfinite(float(x)):
            return "—"
        out = format(x, spec)
        # -0.004 rounds to "-0.00": a sign the reader would take for a (tiny) loss
        return re.sub(r"^-(?=0(\.0*)?$)", "+" if "+" in spec else "", out)
    return str(x)


def fmt_p(p: object) -> str:
    if not _finite(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fmt_big(x: float, unit: str = "") -> str:
    """1.2 G, 3.4 T: compute totals span many orders of magnitude."""
    if not _finite(x):
        return "—"
    for div, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f} {prefix}{unit}"
    return f"{x:.0f} {unit}".strip()


def fmt_config(config: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items()))


# ---------------------------------------------------------------------------------------------
# the report's building blocks (rendered by the HTML template and as Markdown)
# ---------------------------------------------------------------------------------------------


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
        num = re.compile(r"[<>+\-−]?\s*\d[\d.,]*(\s*(/|±|to)\s*[+\-−]?[\d.,—]+)?(\s*\(n = \d+\))?\s*[A-Za-z%]{0,5}")
        return [all(num.fullmatch(r[i]) or r[i] in ("—", "") for r in self.rows)
                and any(num.fullmatch(r[i]) for r in self.rows) for i in range(len(self.columns))]


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

    def figure(self, key: str, title: str, caption: str, draw, compact: bool = False) -> None:  # noqa: ANN001
        """Draw a figure; a failure becomes a visible note, never a broken report."""
        from audit.report import figures

        try:
            png = figures.to_png(draw())
        except Exception as exc:  # noqa: BLE001 - the rest of the report is still worth having
            self.warn(f"Figure '{title}' could not be drawn: {type(exc).__name__}: {exc}")
            return
        self.blocks.append(Block("figure", figure=FigureBlock(key, title, caption, png, compact)))


# ---------------------------------------------------------------------------------------------
# per-method numbers shared by several sections
# ---------------------------------------------------------------------------------------------


@dataclass
class Runs:
    """Confirmation runs (status ok) and search trials (status ok) of one method."""

    test_last: list[float]
    test_curves: list[list[float]]
    config: dict
    search_val: list[float]
    search_configs: list[dict]


def collect_runs(folder: StudyFolder) -> dict[str, Runs]:
    out: dict[str, Runs] = {}
    for m in folder.all_methods:
        conf = [r for r in folder.confirm(m) if r.get("status") == "ok" and _finite(r.get("test_acc_last"))]
        conf.sort(key=lambda r: (r.get("seed") is None, r.get("seed") if isinstance(r.get("seed"), int) else 0))
        search = [r for r in folder.search(m) if r.get("status") == "ok" and _finite(r.get("val_acc_last", r.get("val_acc")))]
        out[m] = Runs(
            test_last=[float(r["test_acc_last"]) for r in conf],
            test_curves=[list(r.get("test_curve") or [r["test_acc_last"]]) for r in conf],
            config=dict(conf[0].get("config") or {}) if conf else {},
            search_val=[float(r.get("val_acc_last", r.get("val_acc"))) for r in search],
            search_configs=[dict(r.get("config") or {}) for r in search],
        )
    return out


def progress(folder: StudyFolder) -> pd.DataFrame:
    """How far each method got against the study's budget."""
    rows = []
    n_seeds = len(folder.seeds)
    for m in folder.all_methods:
        s, c = folder.search(m), folder.confirm(m)
        s_ok = sum(1 for r in s if r.get("status") == "ok")
        c_done = len({r.get("seed") for r in c})
        searched = len(s) >= folder.trials
        if not s and not c:
            state = "not started"
        elif not searched:
            state = "searching"
        elif s_ok == 0:
            state = "every search trial failed"
        elif c_done < n_seeds:
            state = "confirming"
        else:
            state = "complete"
        rows.append({"method": m, "search_trials": len(s), "search_ok": s_ok, "search_failed": len(s) - s_ok,
                     "trials_budget": folder.trials, "confirm_runs": c_done, "seeds_budget": n_seeds, "state": state})
    return pd.DataFrame(rows)


def is_complete(prog: pd.DataFrame) -> bool:
    return bool(len(prog)) and bool(prog.state.isin(["complete", "every search trial failed"]).all())


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------


@dataclass
class Settings:
    margin: float = DEFAULT_MARGIN
    alpha: float = 0.05
    correction: str = "bh"
    claims_path: Path | None = None
    n_tests: int = 0  # filled by the verdict section


def _verdict_class(v: str) -> str:
    return "v-" + v.lower().replace(" ", "-")


def _claimed_text(row: pd.Series) -> str:
    out = fmt(row["claimed_top1"])
    if _finite(row.get("claimed_std")):
        out += f" ± {row['claimed_std']:.2f}"
    if not pd.isna(row.get("claimed_runs")):
        out += f" ({int(row['claimed_runs'])} runs)"
    return out


def _claimed_gain(claims: pd.DataFrame, ref: str, all_claims: pd.DataFrame | None) -> tuple[float | None, str]:
    """The gain over ``ref`` the matched claims state: over nokd from the claim's own baseline
    column, over kd from the same source's kd claim for the same pair."""
    for _, row in claims.iterrows():
        if ref == "nokd" and _finite(row.get("baseline_student_top1")):
            return float(row["claimed_top1"] - row["baseline_student_top1"]), str(row["claim_id"])
        if ref == "kd" and all_claims is not None:
            kd = all_claims[(all_claims.method_id == "kd") & (all_claims.source == row["source"])
                            & (all_claims.dataset_id == row["dataset_id"]) & (all_claims.teacher_id == row["teacher_id"])
                            & (all_claims.student_id == row["student_id"]) & all_claims.claimed_top1.notna()]
            if len(kd):
                return float(row["claimed_top1"] - kd.claimed_top1.iloc[0]), f"{row['claim_id']} vs {kd.claim_id.iloc[0]}"
    return None, ""


def verdict_section(folder: StudyFolder, runs: dict[str, Runs], settings: Settings,
                    registry: pd.DataFrame | None) -> Section:
    from audit.judge.claims import matching_claims, reproduced_value

    sec = Section("verdicts", 1, "Verdicts", short="Verdicts")
    dataset, teacher, student = folder.get("dataset"), folder.get("teacher"), folder.get("student")
    if registry is None:
        sec.warn("The claims registry could not be read; only the relative claims are judged.")

    # One test per row joins the family adjusted below.
    abs_rows: list[dict] = []
    if registry is not None:
        for m in folder.all_methods:
            matched = matching_claims(registry, m, dataset, teacher, student)
            for _, claim in matched.iterrows():
                curves = runs[m].test_curves
                row = {"claim": claim, "method": m}
                if len(curves) == 0:
                    row["verdict"] = None
                else:
                    values = reproduced_value(curves, claim["rule"])
                    try:
                        v = judge_claim(claim["claimed_top1"], values, claimed_std=claim["claimed_std"],
                                        claimed_runs=claim["claimed_runs"], margin=settings.margin, alpha=settings.alpha)
                    except AuditError:
                        # a std without its number of runs cannot enter Welch's test: take the claim as exact
                        v = judge_claim(claim["claimed_top1"], values, claimed_runs=claim["claimed_runs"],
                                        margin=settings.margin, alpha=settings.alpha)
                    row["verdict"] = v
                    row["p"] = {"REPRODUCED": v.p_equivalence, "NOT REPRODUCED": v.p_shortfall,
                                "EXCEEDED": v.p_excess}.get(v.verdict, min(v.p_equivalence, v.p_shortfall, v.p_excess))
                abs_rows.append(row)

    rel_rows: list[dict] = []
    # Every KD paper claims its method beats no KD, and a newer method also claims to beat KD.
    pairs = [(m, ref) for m in folder.methods if m != "nokd" for ref in REFERENCES
             if ref != m and not (ref == "kd" and m in REFERENCES)]
    for m, ref in pairs:
        a, b = runs.get(m), runs.get(ref)
        row: dict = {"method": m, "ref": ref, "result": None}
        claims_m = matching_claims(registry, m, dataset, teacher, student) if registry is not None else pd.DataFrame()
        gain, gain_src = _claimed_gain(claims_m, ref, registry) if len(claims_m) else (None, "")
        row["claimed_gain"], row["gain_source"] = gain, gain_src
        if a is None or b is None or len(a.test_last) < 2 or len(b.test_last) < 2:
            row["why"] = (f"needs at least 2 confirmation runs of each; have {len(a.test_last) if a else 0} "
                          f"of {m} and {len(b.test_last) if b else 0} of {ref}")
        else:
            r = compare_methods(a.test_last, b.test_last, claimed_gain=gain, alpha=settings.alpha)
            row["result"], row["p"] = r, r.p_greater
        rel_rows.append(row)

    tested = [r for r in abs_rows + rel_rows if "p" in r]
    adjusted = adjust_pvalues([r["p"] for r in tested], settings.correction) if tested else []
    for r, q in zip(tested, adjusted):
        r["p_adj"] = float(q)
    settings.n_tests = sum(1 for r in tested if _finite(r["p"]))

    # published (absolute) claims
    if abs_rows:
        rows, classes, frame = [], [], []
        for r in abs_rows:
            c, v = r["claim"], r.get("verdict")
            raw = v.verdict if v is not None else "PENDING"
            # A decided verdict stands only if its test survives the report-wide adjustment.
            final = raw if (v is None or raw == "INCONCLUSIVE" or r["p_adj"] < settings.alpha) else "INCONCLUSIVE"
            shown = final if final == raw else f"{final} (unadjusted: {raw})"
            if v is None:
                cells = ["no confirmation runs yet", "—", "—", "—", "—"]
            else:
                cells = [f"{fmt(v.mean)} ± {fmt(v.std)} (n = {v.n})", fmt(v.diff, "+.2f"),
                         f"{fmt(v.ci_low, '+.2f')} to {fmt(v.ci_high, '+.2f')}", fmt_p(r["p"]), fmt_p(r["p_adj"])]
            epochs = "" if pd.isna(c.get("epochs")) else f" ({int(c['epochs'])} epochs)"
            rows.append([str(c["claim_id"]), r["method"], _claimed_text(c), str(c["rule"]), *cells, shown,
                         f"{c['paper']}; {c['source']}{epochs}"])
            classes.append(_verdict_class(final))
            frame.append({"claim_id": c["claim_id"], "method": r["method"], "claimed": c["claimed_top1"],
                          "claimed_std": c["claimed_std"], "claimed_runs": c["claimed_runs"], "rule": c["rule"],
                          "mean": v.mean if v else None, "std": v.std if v else None, "n": v.n if v else 0,
                          "diff": v.diff if v else None, "ci_low": v.ci_low if v else None,
                          "ci_high": v.ci_high if v else None, "p": r.get("p"), "p_adjusted": r.get("p_adj"),
                          "verdict": final, "verdict_unadjusted": raw, "paper": c["paper"], "source": c["source"]})
        level = 1 - 2 * settings.alpha
        sec.table(Table(["claim", "method", "claimed (%)", "rule", "reproduced (%) mean ± std", "difference (points)",
                         f"{level:.0%} CI of difference", "p", "p adjusted", "verdict", "source"],
                        rows, "verdicts_published.csv", pd.DataFrame(frame), classes, "verdict-table",
                        f"Published claims for {dataset} {teacher} → {student} (margin ±{settings.margin:g} points)"))
        stated = sorted({int(r["claim"]["epochs"]) for r in abs_rows if not pd.isna(r["claim"].get("epochs"))})
        if folder.epochs is not None and any(e != folder.epochs for e in stated):
            sec.note(f"This study trains each student for {folder.epochs} epochs, the claims for "
                     f"{', '.join(map(str, stated))}: a claim trained longer is expected to come out higher.")
        elif folder.epochs is not None:
            sec.note(f"This study trains each student for {folder.epochs} epochs; check the training length in "
                     f"each claim's source before reading a shortfall as a failure to reproduce.")
    else:
        n_reg = 0 if registry is None else int((registry.dataset_id == dataset).sum())
        sec.p(f"No published claim in the registry matches {dataset} with {teacher} → {student} "
              f"({n_reg} claims for {dataset} in the registry). The relative claims every KD paper makes are "
              f"judged below.")

    # relative claims
    rows, classes, frame = [], [], []
    for r in rel_rows:
        res = r["result"]
        label = f"{r['method']} beats {r['ref']}"
        claimed = fmt(r["claimed_gain"], "+.2f") + (f" ({r['gain_source']})" if r["gain_source"] else "") \
            if r["claimed_gain"] is not None else "— (every KD paper claims > 0)"
        if res is None:
            rows.append([label, claimed, "—", "—", "—", "—", "—", "—", "PENDING", r["why"]])
            classes.append("v-pending")
            frame.append({"claim": label, "verdict": "PENDING", "reason": r["why"]})
            continue
        if r["p_adj"] < settings.alpha:
            verdict = "SUPPORTED"
        elif res.gain_ci_high < 0:
            verdict = "CONTRADICTED"
        else:
            verdict = "INCONCLUSIVE"
        rows.append([label, claimed, fmt(res.gain, "+.2f"), f"{fmt(res.gain_ci_low, '+.2f')} to {fmt(res.gain_ci_high, '+.2f')}",
                     f"{res.prob_improvement:.2f} [{res.prob_improvement_ci_low:.2f}, {res.prob_improvement_ci_high:.2f}]",
                     fmt(res.hedges_g), fmt_p(r["p"]), fmt_p(r["p_adj"]), verdict,
                     f"{res.a_mean:.2f} ± {res.a_std:.2f} (n = {res.a_n}) vs {res.b_mean:.2f} ± {res.b_std:.2f} (n = {res.b_n})"])
        classes.append(_verdict_class(verdict))
        frame.append({"claim": label, "claimed_gain": r["claimed_gain"], "gain": res.gain, "ci_low": res.gain_ci_low,
                      "ci_high": res.gain_ci_high, "prob_improvement": res.prob_improvement,
                      "prob_improvement_ci_low": res.prob_improvement_ci_low,
                      "prob_improvement_ci_high": res.prob_improvement_ci_high, "hedges_g": res.hedges_g,
                      "p_welch_one_sided": r["p"], "p_adjusted": r["p_adj"], "verdict": verdict,
                      "a_mean": res.a_mean, "a_std": res.a_std, "a_n": res.a_n,
                      "b_mean": res.b_mean, "b_std": res.b_std, "b_n": res.b_n})
    if rows:
        level = 1 - settings.alpha
        sec.table(Table(["claim", "claimed gain (points)", "gain (points)", f"{level:.0%} CI of gain", "P(A > B) [CI]",
                         "Hedges' g", "Welch p (one-sided)", "p adjusted", "verdict", "test accuracy (%) A vs B"],
                        rows, "verdicts_relative.csv", pd.DataFrame(frame), classes, "verdict-table",
                        "Relative claims: the audited method against no KD and classical KD (last-epoch test accuracy)"))
        sec.note("SUPPORTED: the method is better with adjusted one-sided Welch p below alpha. CONTRADICTED: the "
                 "whole interval of the gain lies below zero. INCONCLUSIVE: neither. P(A > B) is the chance a random "
                 "run of A beats one of B (bootstrap interval); Hedges' g is the gain in pooled standard deviations.")
    else:
        sec.p("The study audits only references (nokd/kd), so there is no relative claim to judge.")
    sec.note(f"Claims are judged on the confirmation runs: the best configuration on validation re-trained on "
             f"{len(folder.seeds)} seeds and scored once on the test set. p-values are adjusted across the "
             f"{settings.n_tests} test(s) in this report with {CORRECTIONS[settings.correction]}; a verdict that does "
             f"not survive the adjustment at alpha = {settings.alpha:g} is reported as INCONCLUSIVE.")
    return sec


def ranking_section(folder: StudyFolder, runs: dict[str, Runs], colour: dict[str, str]) -> Section:
    from audit.report import figures

    sec = Section("ranking", 2, "Method ranking under the equal budget", short="Ranking")
    have = {m: r for m, r in runs.items() if r.test_last}
    if not have:
        sec.warn("No confirmation run has finished yet, so there is nothing to rank.")
        return sec
    order = sorted(have, key=lambda m: -float(np.mean(have[m].test_last)))
    ci = {m: mean_ci(have[m].test_last) for m in order}
    base = {ref: float(np.mean(have[ref].test_last)) if ref in have else math.nan for ref in REFERENCES}
    rows, frame = [], []
    for rank, m in enumerate(order, 1):
        x = np.asarray(have[m].test_last)
        std = float(x.std(ddof=1)) if x.size > 1 else math.nan
        rows.append([str(rank), m, str(x.size), f"{x.mean():.2f} ± {fmt(std)}", f"{fmt(ci[m][0])} to {fmt(ci[m][1])}",
                     "" if m == "nokd" else fmt(x.mean() - base["nokd"], "+.2f"),
                     "" if m == "kd" else fmt(x.mean() - base["kd"], "+.2f"),
                     ", ".join(f"{v:.2f}" for v in x), fmt_config(have[m].config)])
        frame.append({"rank": rank, "method": m, "runs": x.size, "mean": x.mean(), "std": std, "ci_low": ci[m][0],
                      "ci_high": ci[m][1], "vs_nokd": x.mean() - base["nokd"], "vs_kd": x.mean() - base["kd"],
                      "runs_test_acc": ";".join(f"{v:.4f}" for v in x), "best_config": fmt_config(have[m].config)})
    sec.table(Table(["rank", "method", "runs", "test acc (%) mean ± std", f"{RANK_CI:.0%} CI (%)", "vs nokd (points)",
                     "vs kd (points)", "every seed (%)", "configuration (best on validation)"],
                    rows, "ranking.csv", pd.DataFrame(frame)))
    sec.figure("ranking", "Method ranking", "Each dot is one seed and each diamond a mean with its "
               f"{RANK_CI:.0%} interval; a method whose interval sits inside the grey (nokd) or blue (kd) band "
               "is not distinguishable from that reference.",
               lambda: figures.ranking({m: have[m].test_last for m in order}, ci, colour, RANK_CI))
    return sec


def budget_curves_section(folder: StudyFolder, runs: dict[str, Runs], colour: dict[str, str]) -> Section:
    from audit.report import figures

    sec = Section("equal-budget", 3, "Equal-budget curves", short="Equal-budget curves")
    sec.p("Expected best validation accuracy if a method were tuned with only n of its search trials, "
          "estimated from the search trials it ran (Dodge et al. 2019, \"Show Your Work\": the expected "
          "maximum of n draws from the observed scores). Failed trials are left out and counted in the table.")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows, frame = [], []
    for m, r in runs.items():
        failed = sum(1 for t in folder.search(m) if t.get("status") != "ok")
        if not r.search_val:
            rows.append([m, "0", str(failed), "—", "—", "—", "—"])
            continue
        mean, sd = expected_max(r.search_val), expected_max_std(r.search_val)
        curves[m] = (mean, sd)
        n = len(mean)
        half = max(1, n // 2)
        rows.append([m, str(n), str(failed), f"{mean[0]:.2f}", f"{mean[half - 1]:.2f} (n = {half})", f"{mean[-1]:.2f}",
                     f"{max(r.search_val):.2f}"])
        frame += [{"method": m, "n": i + 1, "expected_best_val_acc": mu, "std": s} for i, (mu, s) in enumerate(zip(mean, sd))]
    sec.table(Table(["method", "trials ok", "trials failed", "E[best] n = 1 (%)", "E[best] half budget (%)",
                     "E[best] full budget (%)", "best trial (%)"], rows, "equal_budget.csv", pd.DataFrame(frame)))
    if len(curves) >= 2:
        first = sorted(curves, key=lambda m: -curves[m][0][0])
        last = sorted(curves, key=lambda m: -curves[m][0][-1])
        if first != last:
            sec.p(f"The order changes with the tuning budget: with one trial it is {' > '.join(first)}, "
                  f"with every trial {' > '.join(last)}.")
        else:
            sec.p(f"The order is the same with one trial and with every trial: {' > '.join(last)}.")
    if curves:
        sec.figure("equal_budget", "Equal-budget curves", "Read each curve at the same n: a method whose curve "
                   "rises above the others only at large n wins only with more tuning. Left: the whole range, bands ±1 "
                   "standard deviation; right: the same means zoomed on the end of the budget.",
                   lambda: figures.expected_max_curves(curves, colour))
    else:
        sec.warn("No search trial has finished yet.")
    return sec


def _registry_gain(method: str, registry: pd.DataFrame | None) -> tuple[float, int] | None:
    """Median claimed gain over no-KD of ``method`` anywhere in the registry (all data sets)."""
    if registry is None or method in REFERENCES[:1]:
        return None
    from audit.judge.claims import filter_claims

    rows = filter_claims(registry, method=method)
    gains = (rows.claimed_top1 - rows.baseline_student_top1).dropna()
    return (float(gains.median()), int(gains.size)) if gains.size else None


def _optuna_study(folder: StudyFolder, method: str):  # noqa: ANN202 - optuna.Study
    """The method's Optuna study: from the folder's storage when it opens, else rebuilt in memory
    from the journal (a moved folder, a remote storage, a database locked by a running study)."""
    import optuna

    try:
        from audit.search.storage import method_study, open_storage

        if (folder.path / "optuna.db").is_file() and not folder.spec.get("storage"):
            # Open the study of this folder, wherever it now lies.
            ostudy = method_study(open_storage(None, folder.path), folder.name, method)
            if ostudy is not None and any(t.state == optuna.trial.TrialState.COMPLETE for t in ostudy.trials):
                return ostudy
    except Exception:  # noqa: BLE001 - fall back on the journal, which always exists
        pass
    from methods.catalogue import card

    space = (folder_spaces(folder) or {}).get(method) or card(method).search_space()
    ostudy = optuna.create_study(direction="maximize")
    for r in folder.search(method):
        if r.get("status") != "ok":
            continue
        params = {k: v for k, v in (r.get("config") or {}).items() if k in space}
        ostudy.add_trial(optuna.trial.create_trial(params=params, distributions={k: space[k] for k in params},
                                                   value=float(r.get("val_acc_last", r.get("val_acc")))))
    return ostudy


def folder_spaces(folder: StudyFolder) -> dict | None:
    from audit.folder import read_spaces

    return read_spaces(folder.path)


def importance_table(folder: StudyFolder, method: str) -> tuple[dict[str, float] | None, str, object]:
    """(importances, why not, optuna study) of one method's search."""
    import optuna

    n_ok = sum(1 for r in folder.search(method) if r.get("status") == "ok")
    if n_ok < MIN_TRIALS_FOR_IMPORTANCE:
        return None, f"{n_ok} completed trial(s); importances need at least {MIN_TRIALS_FOR_IMPORTANCE}", None
    try:
        ostudy = _optuna_study(folder, method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(
                ostudy, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except Exception as exc:  # noqa: BLE001 - e.g. every trial with the same values
        return None, f"not computable ({type(exc).__name__}: {exc})", None
    if not imp:
        return None, "no hyper-parameter varied", None
    return dict(imp), "", ostudy


def sensitivity_section(folder: StudyFolder, runs: dict[str, Runs], colour: dict[str, str],
                        registry_gain: dict[str, tuple[float, int] | None], claimed_here: dict[str, float | None]) -> Section:
    import optuna

    from audit.report import figures

    sec = Section("sensitivity", 4, "Hyper-parameter sensitivity", short="Sensitivity")
    points = {}
    for m, r in runs.items():
        by_hp = {}
        for hp in SHARED_HPS:
            xs = [(c[hp], v) for c, v in zip(r.search_configs, r.search_val) if _finite(c.get(hp))]
            if xs:
                by_hp[hp] = (np.array([x for x, _ in xs], float), np.array([y for _, y in xs], float))
        if by_hp:
            points[m] = by_hp
    if points:
        sec.figure("sensitivity", "Hyper-parameter sensitivity", "A flat cloud means the method does not care "
                   "about that hyper-parameter; a steep or narrow one means its result depends on tuning it well.",
                   lambda: figures.sensitivity(points, SHARED_HPS, colour))
    else:
        sec.warn("No search trial has finished yet.")

    # spread across configurations next to the claimed gain
    base = float(np.mean(runs["nokd"].test_last)) if runs.get("nokd") and runs["nokd"].test_last else math.nan
    rows, frame = [], []
    for m, r in runs.items():
        if not r.search_val:
            continue
        v = np.asarray(r.search_val)
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        gain = float(np.mean(r.test_last)) - base if r.test_last and m != "nokd" else math.nan
        if claimed_here.get(m) is not None:
            claimed = f"{claimed_here[m]:+.2f} (this pair)"
        elif registry_gain.get(m):
            g, k = registry_gain[m]
            claimed = f"{g:+.2f} (median of {k} claims elsewhere)"
        else:
            claimed = "—"
        rows.append([m, str(v.size), f"{v.min():.2f}", f"{med:.2f}", f"{v.max():.2f}", f"{v.max() - v.min():.2f}",
                     f"{q3 - q1:.2f}", "" if m == "nokd" else fmt(gain, "+.2f"), "" if m == "nokd" else claimed])
        frame.append({"method": m, "configs": v.size, "val_min": v.min(), "val_median": med, "val_max": v.max(),
                      "spread": v.max() - v.min(), "iqr": q3 - q1, "observed_test_gain_vs_nokd": gain,
                      "claimed_gain_vs_nokd": claimed_here.get(m) if claimed_here.get(m) is not None
                      else (registry_gain[m][0] if registry_gain.get(m) else None)})
    if rows:
        sec.table(Table(["method", "configs", "val worst (%)", "val median (%)", "val best (%)", "spread (points)",
                         "IQR (points)", "observed test gain vs nokd (points)", "claimed gain vs nokd (points)"],
                        rows, "sensitivity.csv", pd.DataFrame(frame),
                        caption="Validation accuracy across searched configurations, next to the gain KD is claimed to give"))
        sec.note("When the spread across configurations is larger than the claimed gain, how well a method was "
                 "tuned matters more than which method it is. Claimed gains marked 'elsewhere' come from other "
                 "data sets and pairs in the registry, for scale only.")

    # importances: one row per method, one column per hyper-parameter
    found: dict[str, dict[str, float]] = {}
    why_not: dict[str, str] = {}
    for m in runs:
        imp, why, ostudy = importance_table(folder, m)
        if imp is None:
            why_not[m] = why
            continue
        found[m] = imp
        sec.figure(f"importance_{m}", f"Hyper-parameter importance of {m}",
                   "The longest bar marks the hyper-parameter that explains most of the variation in validation accuracy.",
                   lambda ostudy=ostudy, m=m: figures.importances(ostudy, optuna.importance.FanovaImportanceEvaluator(seed=0), m),
                   compact=True)
    params = list(dict.fromkeys([*SHARED_HPS, *(k for imp in found.values() for k in imp)]))
    params = [p for p in params if any(p in imp for imp in found.values())]
    rows = [[m, *(fmt(found[m].get(p), ".3f") if m in found else "—" for p in params), why_not.get(m, "")] for m in runs]
    frame = pd.DataFrame([{"method": m, "param": k, "importance": v} for m, imp in found.items() for k, v in imp.items()],
                         columns=["method", "param", "importance"])
    sec.table(Table(["method", *params, "note"], rows, "importances.csv", frame,
                    caption="Hyper-parameter importance (optuna.importance.get_param_importances, fANOVA with seed 0; "
                            "each row sums to 1)"))
    return sec


def matrix_section(folder: StudyFolder) -> Section:
    from audit.report import figures

    sec = Section("cross-architecture", 5, "Cross-architecture matrix", short="Architectures")
    default = (folder.get("teacher"), folder.get("student"))
    pair_of = lambda r: (str(r.get("teacher", default[0])), str(r.get("student", default[1])))  # noqa: E731
    conf = [r for r in folder.records if r.get("phase") == "confirm" and r.get("status") == "ok" and _finite(r.get("test_acc_last"))]
    pairs = list(dict.fromkeys(pair_of(r) for r in conf)) or [default]
    if len(pairs) < 2:
        sec.p(f"This study has one teacher → student pair ({default[0]} → {default[1]}); the matrix needs several.")
        return sec
    methods = [m for m in folder.all_methods if m != "nokd"]
    cols = [f"{t} → {s}" for t, s in pairs]
    values = np.full((len(methods), len(pairs)), np.nan)
    for j, pair in enumerate(pairs):
        acc = {m: [r["test_acc_last"] for r in conf if r["method"] == m and pair_of(r) == pair] for m in folder.all_methods}
        if not acc.get("nokd"):
            continue
        for i, m in enumerate(methods):
            if acc.get(m):
                values[i, j] = float(np.mean(acc[m]) - np.mean(acc["nokd"]))
    sec.table(Table(["method", *cols], [[m, *(fmt(v, "+.2f") for v in values[i])] for i, m in enumerate(methods)],
                    "cross_architecture.csv", pd.DataFrame(values, index=methods, columns=cols).rename_axis("method").reset_index()))
    sec.figure("matrix", "Cross-architecture matrix", "Look for a row that stays blue (a gain) across every pair: a "
               "method that helps only one pair does not generalise.", lambda: figures.matrix(values, methods, cols))
    return sec


def budget_section(folder: StudyFolder, colour: dict[str, str]) -> Section:
    from audit.report import figures

    sec = Section("budget", 6, "Budget and compute", short="Budget & compute")
    sec.table(progress_table(progress(folder)))
    methods = [m for m in folder.all_methods if folder.search(m) or folder.confirm(m)]
    if not methods:
        sec.warn("No run has finished yet.")
        return sec

    def total(recs: list[dict], key: str) -> float:
        return float(sum(r.get(key) or 0 for r in recs))

    stats_by: dict[str, dict] = {}
    for m in methods:
        recs = [r for r in folder.records if r.get("method") == m and r.get("status") == "ok"]
        s, c = [r for r in recs if r.get("phase") == "search"], [r for r in recs if r.get("phase") == "confirm"]
        n = max(len(recs), 1)
        stats_by[m] = {
            "trials": len(folder.search(m)), "runs": len(recs), "epochs_per_run": total(recs, "epochs") / n,
            "pretrain_epochs": total(recs, "pretrain_epochs"), "images": total(recs, "images"),
            "images_per_run": total(recs, "images") / n, "flops": total(recs, "flops"), "flops_per_run": total(recs, "flops") / n,
            "wall_s": total(recs, "wall_s"),
            "images_split": (total(s, "images"), total(c, "images")),
            "wall_split": (total(s, "wall_s"), total(c, "wall_s")),
        }
    least_images = min(v["images_per_run"] for v in stats_by.values() if v["runs"]) if any(v["runs"] for v in stats_by.values()) else 0
    least_epochs = min((v["epochs_per_run"] for v in stats_by.values() if v["runs"]), default=0)
    nokd_flops = stats_by.get("nokd", {}).get("flops_per_run", 0)
    rows, frame, classes = [], [], []
    for m, v in stats_by.items():
        flags = []
        if v["pretrain_epochs"] > 0:
            flags.append(f"{v['pretrain_epochs']:.0f} extra pre-training epochs (paper protocol)")
        if v["runs"] and least_images and v["images_per_run"] > 1.01 * least_images:
            flags.append(f"{v['images_per_run'] / least_images:.2f}x the images per run of the least")
        if v["runs"] and least_epochs and v["epochs_per_run"] > least_epochs + 1e-9:
            flags.append(f"{v['epochs_per_run']:.1f} epochs per run vs {least_epochs:.1f}")
        ratio = f"{v['flops_per_run'] / nokd_flops:.2f}x" if nokd_flops else "—"
        rows.append([m, f"{v['trials']} / {folder.trials}", str(v["runs"]), f"{v['epochs_per_run']:.1f}",
                     f"{v['pretrain_epochs']:.0f}", fmt_big(v["images"]), fmt_big(v["flops"], "FLOP"), ratio,
                     f"{v['wall_s'] / 60:.1f}", "; ".join(flags) or "—"])
        classes.append("flagged" if flags else "")
        frame.append({"method": m, **{k: val for k, val in v.items() if not k.endswith("_split")}, "flags": "; ".join(flags)})
    sec.table(Table(["method", "search trials", "runs (ok)", "epochs per run", "pre-training epochs", "images",
                     "FLOPs", "FLOPs per run vs nokd", "wall time (min)", "used more"], rows, "budget.csv",
                    pd.DataFrame(frame), classes))
    from audit.budget import check_equal

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


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _gpu() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 - a broken driver is "no GPU" for the report
        pass
    return "none"


def _git_commit() -> str:
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(REPO_ROOT), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=10, check=True).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "not available (not a git checkout)"


def provenance_section(folder: StudyFolder, settings: Settings) -> Section:
    sec = Section("provenance", 7, "Provenance", short="Provenance")
    spec = folder.spec
    t = folder.teacher or {}
    ident = t.get("ident", {}) if isinstance(t.get("ident"), dict) else {}
    sec.kv([
        ("study", folder.name),
        ("budget hash", str(spec.get("budget_hash", "—"))),
        ("data set", f"{folder.get('dataset')} (sha256 {ident.get('data_sha256', 'not recorded')})"),
        ("split", f"split seed {folder.get('split_seed')}, validation fraction {folder.get('val_fraction')}"),
        ("confirmation seeds", ", ".join(str(s) for s in folder.seeds)),
        ("search seed", folder.get("search_seed")),
        ("teacher", f"{folder.get('teacher')} seed {folder.get('teacher_seed')}"
         + (f": val {fmt(t.get('val_acc'))} %, test {fmt(t.get('test_acc'))} %, {t.get('epochs', '?')} epochs" if t else ": no teacher.json")),
        ("teacher checkpoint", f"{t.get('key', '—')} (sha256 {t.get('sha256', '—')}), created {t.get('created', '—')} "
         f"on host {t.get('host', '—')} with torch {t.get('torch', '—')}" if t else "—"),
        ("teacher recipe", json.dumps(ident.get("recipe", {}), sort_keys=True) if ident else "—"),
        ("statistics", f"equivalence margin ±{settings.margin:g} points, alpha {settings.alpha:g}, "
                       f"p-value correction: {CORRECTIONS[settings.correction]} over {settings.n_tests} test(s), "
                       f"ranking intervals {RANK_CI:.0%} t"),
    ])
    sec.p("The software and hardware below are those of the machine that wrote this report.")
    sec.kv([
        ("kd-audit", f"{_version('kd-audit')}, git commit {_git_commit()}"),
        ("python", f"{platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}"),
        ("packages", ", ".join(f"{p} {_version(p)}" for p in ("torch", "optuna", "ray", "scipy", "numpy", "pandas",
                                                              "matplotlib", "jinja2", "scikit-learn"))),
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} logical cores"),
        ("GPU", _gpu()),
        ("generated", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
    ])
    sec.p("The full resolved study (study.toml):")
    sec.pre(folder.toml_text)
    return sec


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


def _md(text: object) -> str:
    """Markdown-safe text: no markup, no table breaks, no links."""
    s = str(text).replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "|*_`[]":
        s = s.replace(ch, "\\" + ch)
    return re.sub(r"\s*\n\s*", " ", s)


def render_markdown(title: str, header: list[Block], sections: list[Section]) -> str:
    out = [f"# {_md(title)}", ""]

    def block(b: Block) -> None:
        if b.kind in ("p", "note", "warn"):
            out.extend([("> " if b.kind != "p" else "") + _md(b.text), ""])
        elif b.kind == "table" and b.table is not None:
            t = b.table
            if t.caption:
                out.extend([f"**{_md(t.caption)}**", ""])
            out.append("| " + " | ".join(_md(c) for c in t.columns) + " |")
            out.append("|" + "|".join("---:" if n else "---" for n in t.numeric) + "|")
            out.extend("| " + " | ".join(_md(c) for c in row) + " |" for row in t.rows)
            out.append("")
        elif b.kind == "figure" and b.figure is not None:
            f = b.figure
            out.extend([f"![{_md(f.title)}](figures/{f.key}.png)", "", f"*{_md(f.title)}.* {_md(f.caption)}", ""])
        elif b.kind == "kv":
            out.extend([f"- **{_md(k)}**: {_md(v)}" for k, v in b.pairs] + [""])
        elif b.kind == "pre":
            fence = "~" * max(4, max((len(m) for m in re.findall(r"~+", b.text)), default=0) + 1)
            out.extend([fence + "toml", b.text.rstrip("\n"), fence, ""])

    for b in header:
        block(b)
    for s in sections:
        out.extend([f"## {s.number}. {_md(s.title)}", ""])
        for b in s.blocks:
            block(b)
    return "\n".join(out)


def _write(path: Path, data: str | bytes) -> None:
    """Write next to the target, then rename: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


def progress_table(prog: pd.DataFrame) -> Table:
    rows = [[r.method, f"{r.search_trials} / {r.trials_budget}", str(r.search_failed), f"{r.confirm_runs} / {r.seeds_budget}",
             r.state] for r in prog.itertuples()]
    return Table(["method", "search trials", "failed trials", "confirmation runs", "state"], rows, "progress.csv", prog,
                 ["" if r[-1] == "complete" else "flagged" for r in rows], caption="Runs recorded against the budget")


def _header(folder: StudyFolder, prog: pd.DataFrame) -> tuple[list[Block], bool]:
    blocks = [Block("p", f"{folder.get('dataset')}, teacher {folder.get('teacher')} → student {folder.get('student')}; "
                         f"methods {', '.join(folder.all_methods)}; {folder.trials} search trials per method, "
                         f"{folder.epochs if folder.epochs is not None else '?'} epoch(s) per run, "
                         f"{len(folder.seeds)} confirmation seeds; backend {folder.get('backend')}.")]
    complete = is_complete(prog)
    if not complete:
        journal_path = folder.path / journal.JOURNAL
        when = ("last record written " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(journal_path.stat().st_mtime))
                if journal_path.exists() else "nothing recorded yet")
        per_method = "; ".join(f"{r.method} {r.search_trials}/{r.trials_budget} search trials, "
                               f"{r.confirm_runs}/{r.seeds_budget} confirmation runs ({r.state})" for r in prog.itertuples())
        blocks.append(Block("warn", f"This study is incomplete (still running, or interrupted; {when}): "
                                    f"{per_method}. Every number below uses only the runs recorded so far."))
    for p in folder.problems:
        blocks.append(Block("warn", p))
    return blocks, complete


def write_report(study_dir: Path, *, margin: float = DEFAULT_MARGIN, alpha: float = 0.05, correction: str = "bh",
                 claims_path: Path | None = None) -> Path:
    """Write the report of the study in ``study_dir`` (finished or not); return index.html's path.

    Writes ``index.html``, ``report.md``, ``tables/*.csv`` and ``figures/*.png`` into the folder.
    ``margin``/``alpha`` are those of the claim verdicts; ``correction`` (bh or holm) adjusts
    the p-values of every verdict in the report together.
    """
    if correction not in ADJUSTMENTS:
        raise unknown("p-value correction", correction, ADJUSTMENTS)
    if not (_finite(margin) and margin > 0):
        raise AuditError(f"margin must be a positive number of accuracy points; got {margin}")
    if not (_finite(alpha) and 0 < alpha < 0.5):
        raise AuditError(f"alpha must be between 0 and 0.5 (exclusive); got {alpha}")
    from audit.judge.claims import load_claims, matching_claims
    from audit.report import figures

    folder = load_study(study_dir)
    settings = Settings(margin, alpha, correction, claims_path)
    runs = collect_runs(folder)
    colour = figures.colours(folder.all_methods)
    prog = progress(folder)
    header, complete = _header(folder, prog)

    try:
        registry = load_claims(claims_path)
    except AuditError:
        registry = None
    claimed_here: dict[str, float | None] = {}
    for m in folder.all_methods:
        if registry is not None and m != "nokd":
            matched = matching_claims(registry, m, folder.get("dataset"), folder.get("teacher"), folder.get("student"))
            claimed_here[m] = _claimed_gain(matched, "nokd", registry)[0] if len(matched) else None
    registry_gain = {m: _registry_gain(m, registry) for m in folder.all_methods}

    sections = [
        verdict_section(folder, runs, settings, registry),
        ranking_section(folder, runs, colour),
        budget_curves_section(folder, runs, colour),
        sensitivity_section(folder, runs, colour, registry_gain, claimed_here),
        matrix_section(folder),
        budget_section(folder, colour),
        provenance_section(folder, settings),
    ]

    out = Path(study_dir)
    (out / "tables").mkdir(exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    all_blocks = [*header, *(b for s in sections for b in s.blocks)]
    for b in all_blocks:
        if b.kind == "table" and b.table is not None and b.table.csv and b.table.frame is not None:
            _write(out / "tables" / b.table.csv, b.table.frame.to_csv(index=False))
        if b.kind == "figure" and b.figure is not None:
            _write(out / "figures" / f"{b.figure.key}.png", b.figure.png)

    title = f"KD reproducibility report: {folder.name}"
    html = _environment().get_template("index.html.j2").render(
        title=title, header=header, sections=sections, complete=complete,
        n_figures=sum(1 for b in all_blocks if b.kind == "figure"))
    _write(out / "report.md", render_markdown(title, header, sections))
    index = out / "index.html"
    _write(index, html)
    return index


def _environment():  # noqa: ANN202 - jinja2.Environment
    import jinja2

    # autoescape on for every template: names and numbers from a study folder are never markup.
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
