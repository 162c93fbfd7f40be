"""Ends the Ray processes a driver started once the driver is gone, however it went.

Ray's own clean-up runs at a normal exit; a driver killed with SIGKILL leaves Ray's dashboard and
runtime-env agents running for good (they ignore the raylet's death). The driver starts this
small process (``python -m audit.search.reaper DRIVER_PID RAY_PID...``) in a session of its own,
so a signal to the driver's process group does not reach it. It watches the driver, keeps a list
of Ray's processes (those named and every process below them, remembered with their start time
so a reused pid is never touched), and when the driver ends it sends them SIGTERM, then SIGKILL
to any still running after a grace period. Standard library only: it starts in a blink.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time

GRACE_S = 3.0
POLL_S = 1.0


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                tree.setdefault(st[0], []).append(int(entry))
    return tree


def _refresh(known: dict[int, int], roots: list[int]) -> None:
    """Add every live process below the known ones (and the roots) to ``known``, pid -> start time."""
    tree, todo = _children(), [p for p in [*roots, *known] if _alive(p, known)]
    while todo:
        pid = todo.pop()
        st = _stat(pid)
        if st is None:
            continue
        known.setdefault(pid, st[1])
        todo += [c for c in tree.get(pid, []) if c not in known]


def _alive(pid: int, known: dict[int, int]) -> bool:
    st = _stat(pid)
    return st is not None and (pid not in known or st[1] == known[pid])


def _signal(known: dict[int, int], sig: int) -> int:
    sent = 0
    for pid in known:
        if _alive(pid, known):
            try:
                os.kill(pid, sig)
                sent += 1
            except OSError:
                pass
    return sent


def reap(driver: int, roots: list[int]) -> None:
    known: dict[int, int] = {}
    try:
        watch = os.pidfd_open(driver)
    except OSError:
        watch = None  # already gone, or no pidfd: poll instead
    while True:
        _refresh(known, roots)
        if watch is not None:
            if select.select([watch], [], [], POLL_S)[0]:
                break
        else:
            if _stat(driver) is None:
                break
            time.sleep(POLL_S)
    _refresh(known, roots)
    if _signal(known, signal.SIGTERM):
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and any(_alive(p, known) for p in known):
            time.sleep(0.1)
        _signal(known, signal.SIGKILL)


if __name__ == "__main__":
    reap(int(sys.argv[1]), [int(p) for p in sys.argv[2:]])
