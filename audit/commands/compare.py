"""``audit compare``: judge a claimed accuracy against runs the user already has (no training)."""
from __future__ import annotations

import argparse
import json
import math
import re

from audit.errors import AuditError

# What a user types as a negative number or a list starting with one ("-0.5", "-1,72.3"): read as
# a value, so that it gets the range error below rather than argparse's "expected one argument".
_NEGATIVE = re.compile(r"^-\.?\d")
STATISTICS = {"mean": "the mean of its runs (a single run when --claimed-runs is 1 or not given)",
              "median": "the median of its runs", "best": "the best of its runs (seeds)"}


def _number(text: str, what: str, allowed: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AuditError(f"{what} must be {allowed}; got {text!r}") from None
    if not math.isfinite(value):
        raise AuditError(f"{what} must be {allowed}; got {text!r}")
    return value


def _accuracy(text: str, what: str) -> float:
    value = _number(text, what, "an accuracy in percent between 0 and 100")
    if not 0 <= value <= 100:
        raise AuditError(f"{what} must be an accuracy in percent between 0 and 100; got {text.strip()!r}")
    return value


def _runs(text: str) -> list[float]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or all(p == "" for p in parts):
        raise AuditError("no runs given: --runs takes comma-separated accuracies, e.g. --runs 73.1,72.8,73.4")
    out = []
    for i, part in enumerate(parts, start=1):
        if part == "":
            raise AuditError(f"--runs has an empty entry at position {i}; give comma-separated accuracies, e.g. 73.1,72.8")
        out.append(_accuracy(part, f"--runs entry {i}"))
    return out


def _parse(args: argparse.Namespace) -> dict[str, object]:
    claimed = _accuracy(args.claimed, "--claimed")
    runs = _runs(args.runs)
    std = runs_k = None
    if args.claimed_std is not None:
        std = _number(args.claimed_std, "--claimed-std", "a non-negative number of accuracy points")
        if std < 0:
            raise AuditError(f"--claimed-std must be a non-negative number of accuracy points; got {args.claimed_std!r}")
    if args.claimed_runs is not None:
        try:
            runs_k = int(args.claimed_runs)
        except ValueError:
            raise AuditError(f"--claimed-runs must be a whole number of runs; got {args.claimed_runs!r}") from None
        if runs_k < 1:
            raise AuditError(f"--claimed-runs must be at least 1; got {runs_k}")
    if std is not None and (runs_k is None or runs_k < 2):
        raise AuditError("--claimed-std needs --claimed-runs K with K >= 2 (the number of runs behind the claimed std)")
    margin = _number(args.margin, "--margin", "a positive number of accuracy points")
    if margin <= 0:
        raise AuditError(f"--margin must be a positive number of accuracy points; got {args.margin!r}")
    alpha = _number(args.alpha, "--alpha", "a level between 0 and 0.5")
    if not 0 < alpha < 0.5:
        raise AuditError(f"--alpha must be a level between 0 and 0.5 (exclusive); got {args.alpha!r}")
    # The margin is in points: accuracies given as fractions would make every claim "reproduced",
    # and a percent claim against fraction runs a confident "not reproduced".
    values = [claimed, *runs]
    if all(v <= 1 for v in values):
        raise AuditError("accuracies look like fractions (all <= 1); give them in percent, e.g. 73.4, "
                         "since --margin is in accuracy points")
    if any(v <= 1 for v in values):
        small = ", ".join(f"{v:g}" for v in values if v <= 1)
        raise AuditError(f"accuracies mix percent and fractions ({small} look like fractions, the rest like percent); "
                         f"give every accuracy in percent, e.g. 73.4 rather than 0.734")
    if args.selection != "mean" and (runs_k is None or runs_k < 2):
        raise AuditError(f"--selection {args.selection} needs --claimed-runs K with K >= 2 (the runs it was chosen from)")
    if args.claim_noise == "welch" and std is None:
        raise AuditError("--claim-noise welch needs --claimed-std and --claimed-runs (the claim's own spread)")
    if args.claim_noise == "welch" and args.selection != "mean":
        raise AuditError("--claim-noise welch judges a mean of runs; use the shared noise model for "
                         f"--selection {args.selection}")
    return dict(claimed=claimed, runs=runs, claimed_std=std, claimed_runs=runs_k, margin=margin, alpha=alpha,
                statistic=args.selection, noise=args.claim_noise)


def _show(v) -> None:
    from rich.table import Table

    from audit.commands._console import make_console

    def num(x: float | None, fmt: str = ".2f") -> str:
        return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)

    def p(x: float) -> str:
        return num(x, ".3g")

    claim = num(v.claimed)
    if v.claimed_std is not None:
        claim += f" ± {num(v.claimed_std)} ({v.claimed_runs} runs)"
    elif v.claimed_runs is not None:
        claim += f" ({v.claimed_runs} runs, no spread given)"
    if v.statistic != "mean":
        claim += f", the {v.statistic} of them"
    colour = {"REPRODUCED": "green", "NOT REPRODUCED": "red", "EXCEEDED": "cyan"}.get(v.verdict, "yellow")
    table = Table(title="Claim against reproduced runs", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("verdict", f"[{colour}]{v.verdict}[/]"),
        ("claimed", claim),
        ("reproduced", f"{num(v.mean)} ± {num(v.std)} (n = {v.n})"),
        ("difference", f"{num(v.raw_diff, '+.2f')} points" + (
            f" (corrected for the claim's selection: {num(v.diff, '+.2f')})" if abs(v.diff - v.raw_diff) > 5e-3 else "")),
        (f"{v.ci_level:.0%} CI", f"{num(v.ci_low, '+.2f')} to {num(v.ci_high, '+.2f')}"),
        ("claim modelled as", v.model),
        ("margin", f"±{v.margin:g} points (alpha {v.alpha:g})"),
        ("p equivalence (TOST)", p(v.p_equivalence)),
        ("p shortfall", p(v.p_shortfall)),
        ("p excess", p(v.p_excess)),
        ("test", v.test),
        ("runs to decide (80% power)", "-" if v.runs_needed is None else str(v.runs_needed)),
    ]
    for k, val in rows:
        table.add_row(k, val)
    console = make_console()
    console.print(table)
    console.print(v.explanation, soft_wrap=True, highlight=False)


def run(args: argparse.Namespace) -> int:
    from audit.judge.claim import judge_claim

    verdict = judge_claim(**_parse(args))  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(verdict.to_dict(), indent=2))
    else:
        _show(verdict)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from audit.judge.claim import DEFAULT_MARGIN
    from audit.judge.claim_model import NOISES

    p = subparsers.add_parser(
        "compare", help="judge a claimed accuracy against runs you already have",
        description="Judge a claimed accuracy against reproduced runs: REPRODUCED, NOT REPRODUCED, "
                    "EXCEEDED or INCONCLUSIVE, with the number of runs that would decide it. The claim is "
                    "modelled as a statistic of its own runs, with the seed spread it shares with yours.")
    if hasattr(p, "_negative_number_matcher"):  # argparse's own test for "is this a value"
        p._negative_number_matcher = _NEGATIVE
    # Numbers are read as text and checked here, so every bad value gets one clear line.
    p.add_argument("--claimed", required=True, metavar="X", help="the claimed accuracy, in percent (0-100)")
    p.add_argument("--claimed-std", metavar="S", help="the claim's std across its runs (needs --claimed-runs)")
    p.add_argument("--claimed-runs", metavar="K",
                   help="how many runs the claim comes from (not given: taken as a single run, the noisiest case)")
    p.add_argument("--selection", choices=list(STATISTICS), default="mean",
                   help="the claim is " + "; ".join(f"{k}: {v}" for k, v in STATISTICS.items()) + " (default mean)")
    p.add_argument("--claim-noise", choices=NOISES, default="shared",
                   help="shared (default): the claim's runs have the seed spread of yours; welch: the claim's stated "
                        "std kept apart; exact: the claimed number taken as a constant")
    p.add_argument("--runs", required=True, metavar="A,B,C", help="reproduced accuracies in percent, comma-separated")
    p.add_argument("--margin", default=str(DEFAULT_MARGIN), metavar="M",
                   help=f"equivalence margin in accuracy points (default {DEFAULT_MARGIN})")
    p.add_argument("--alpha", default="0.05", metavar="A", help="level of each one-sided test (default 0.05)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(func=run)
