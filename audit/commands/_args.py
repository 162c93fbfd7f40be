"""Argument types shared by the commands: a bad value is one line from argparse, exit code 2."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def positive(kind: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be a positive integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{kind} must be a positive integer, got {text!r}")
        return value

    return parse


def positive_minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"--stale-after must be a positive number of minutes, got {text!r}")
    return value
