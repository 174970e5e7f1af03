"""How many CPUs this process may really use: the cores it may run on, capped by its cgroup's CPU quota
(a container's `cpus:` limit), which os.cpu_count() does not see."""

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def usable_cpus(cgroup: Path = CGROUP) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(cgroup)
    return max(1, min(cores, math.ceil(quota))) if quota else max(1, cores)


def cpu_quota(cgroup: Path = CGROUP) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``);
    None when there is no quota."""
    try:
        limit, every = (cgroup / "cpu.max").read_text().split()[:2]
        return None if limit == "max" else int(limit) / int(every)
    except (OSError, ValueError):
        pass
    try:
        quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
