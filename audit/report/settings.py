"""How the report judges: the claim verdicts' margin and level, and the p-value correction
applied across every test in the report."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audit.judge.claim import DEFAULT_MARGIN

CORRECTIONS = {"bh": "Benjamini-Hochberg (false discovery rate)", "holm": "Holm (family-wise error rate)"}


@dataclass
class Settings:
    margin: float = DEFAULT_MARGIN
    alpha: float = 0.05
    correction: str = "bh"
    claims_path: Path | None = None
    n_tests: int = 0  # filled by the verdict section, shown by the provenance section
