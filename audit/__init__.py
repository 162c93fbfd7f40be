"""kd-audit: a reproducibility auditor for knowledge distillation."""

__version__ = "0.1.0"
