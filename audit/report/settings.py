"""How the report judges: the claim verdicts' margin and level (and whether they are the ones the
study fixed before its runs), how a claim's own noise is modelled, where the seed spread comes
from, and the p-value correction applied across every test in the report."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audit.judge.claim import DEFAULT_ALPHA, DEFAULT_MARGIN

CORRECTIONS = {"bh": "Benjamini-Hochberg (false discovery rate)", "holm": "Holm (family-wise error rate)"}
SPREADS = {"runs": "each method's own confirmation runs",
           "study": "the confirmation runs of every method of the study, pooled"}


@dataclass
class Settings:
    margin: float = DEFAULT_MARGIN
    alpha: float = DEFAULT_ALPHA
    correction: str = "bh"
    claims_path: Path | None = None
    n_tests: int = 0  # filled by the verdict section, shown by the provenance section
    margin_registered: float | None = None  # what study.toml fixed before the runs (None: made before it did)
    alpha_registered: float | None = None
    noise: str = "shared"  # how a claim's own noise is modelled (audit.judge.claim_model.NOISES)
    spread: str = "runs"  # where the seed spread of an absolute verdict comes from (SPREADS)

    @property
    def registered(self) -> bool:
        return self.margin_registered is not None and self.alpha_registered is not None

    @property
    def deviates(self) -> bool:
        """The report judges with another margin or level than the study fixed before its runs."""
        return self.registered and (self.margin != self.margin_registered or self.alpha != self.alpha_registered)

    def judged_at(self, margin: bool = True) -> str:
        """What sits beside every verdict: the margin (for absolute claims) and level, and whether
        they were fixed before the runs."""
        used = (f"±{self.margin:g} points, " if margin else "") + f"alpha {self.alpha:g}"
        if not self.registered:
            return f"{used} (not pre-registered: the study predates it)"
        if self.alpha == self.alpha_registered and (not margin or self.margin == self.margin_registered):
            return f"{used} (pre-registered)"
        fixed = (f"±{self.margin_registered:g}, " if margin else "") + f"alpha {self.alpha_registered:g}"
        return f"{used}: NOT the pre-registered {fixed}"
