"""A claim as it was published (``audit reproduce``): the claim source's preset (``presets``),
resolved for one claim into a training protocol (``protocol``), a reproduction's study file and
plan with its measured compute (``plan``), and the path that trains the as-published arm over
seeds and, with ``--with-audit``, the equal-budget arm beside it (``arms``).

The as-published arm answers "is the number reproducible at all?"; the equal-budget arm (an
ordinary study, ``audit run``) answers "does the gain survive equal tuning?" (DESIGN.md, "Two
arms for one claim").
"""
