"""The report's sections, one module each, in the order the page shows them: the header (what
was studied, how far it got), then verdicts, ranking, equal-budget curves, sensitivity,
cross-architecture matrix, budget and compute, provenance. Each builds a ``document.Section``
from the study folder and the shared per-method numbers (``runs.Runs``)."""
