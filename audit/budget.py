"""Equal budgets: what every compared method must share, and the check that they did.

A study's budget (data set, split, architectures, trials, seeds, recipe, concurrency) is hashed
(``Study.budget_hash``) and the hash is stamped on every trial and run. Results whose hashes
differ are not compared unless the user says so, and then the output says it too.
"""
from __future__ import annotations

from collections import Counter

from audit.errors import AuditError

BUDGET_COLUMNS = ("epochs", "steps", "images", "flops", "wall_s")


def check_equal(records: list[dict], *, allow_unequal: bool = False) -> list[str]:
    """Refuse (AuditError) records made under different budgets, or return warnings when allowed.

    Also warns about a method whose runs used more training epochs than the others (a paper's
    own multi-stage protocol), which the comparison must state.
    """
    hashes = Counter(r.get("budget_hash") for r in records)
    warnings: list[str] = []
    if len(hashes) > 1:
        by_method: dict[str, set] = {}
        for r in records:
            by_method.setdefault(r["method"], set()).add(r.get("budget_hash"))
        detail = "; ".join(f"{m}: {', '.join(sorted(map(str, h)))}" for m, h in sorted(by_method.items()))
        message = f"results were made under {len(hashes)} different budgets ({detail})"
        if not allow_unequal:
            raise AuditError(f"{message}; refusing to compare them (pass --allow-unequal-budgets to compare anyway)")
        warnings.append(f"UNEQUAL BUDGETS: {message}; compared anyway, as asked")
    epochs: dict[str, int] = {}
    for r in records:
        if r.get("status") == "ok" and r.get("epochs"):
            epochs[r["method"]] = max(epochs.get(r["method"], 0), int(r["epochs"]))
    if epochs:
        least = min(epochs.values())
        for method, e in sorted(epochs.items()):
            if e > least:
                warnings.append(f"{method} trained for {e} epochs against {least} for others (paper protocol: more compute)")
    return warnings
