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


def any_number(what: str) -> Callable[[str], float]:
    """A number as typed (its range is checked where it is used, which names what is allowed)."""
    def parse(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None

    return parse


def positive_minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"--stale-after must be a positive number of minutes, got {text!r}")
    return value


def number(flag: str, *, above: float | None = None, at_least: float | None = None) -> Callable[[str], float]:
    """A finite number, ``> above`` or ``>= at_least``."""
    allowed = f"a finite number {'> ' + format(above, 'g') if above is not None else '>= ' + format(at_least, 'g')}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (above is not None and value <= above) or (at_least is not None and value < at_least):
            raise argparse.ArgumentTypeError(f"{flag} must be {allowed}, got {text!r}")
        return value

    return parse


def integer(flag: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer from ``low`` (to ``high``)."""
    allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{flag} must be {allowed}, got {text!r}")
        return value

    return parse
