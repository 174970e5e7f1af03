"""CPU time and memory of a set of processes and their descendants, read from /proc (Linux).

The benchmark attributes the stack's CPU to its parts: a service's own process, and its children (the
image-worker's codec processes) under a label of their own.
"""

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sample:
    cpu_s: float
    rss_bytes: int


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, user+system seconds, resident bytes), or None for a process that is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    # fields[0] is field 3 of proc(5): state; ppid is field 4, utime 14, stime 15, rss 24.
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS, int(fields[21]) * PAGE


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children.setdefault(stat[0], []).append(int(entry))
    return children


def sample(roots: dict[str, int]) -> dict[str, Sample]:
    """Per label: the process ``roots[label]`` itself, and ``label/children`` summed over its descendants."""
    children = _children()
    out: dict[str, Sample] = {}
    for label, pid in roots.items():
        own = _stat(pid)
        if own is not None:
            out[label] = Sample(own[1], own[2])
        cpu = rss = 0.0
        pending = list(children.get(pid, []))
        while pending:
            child = pending.pop()
            pending.extend(children.get(child, []))
            if (stat := _stat(child)) is not None:
                cpu += stat[1]
                rss += stat[2]
        if cpu or rss:
            out[f"{label}/children"] = Sample(cpu, int(rss))
    return out


def cpu_between(before: dict[str, Sample], after: dict[str, Sample]) -> dict[str, float]:
    """CPU seconds each label used between two samples (a label that appeared counts from zero)."""
    return {label: after[label].cpu_s - (before[label].cpu_s if label in before else 0.0) for label in after}


def rss_of(pid: int) -> int:
    stat = _stat(pid)
    return stat[2] if stat else 0
