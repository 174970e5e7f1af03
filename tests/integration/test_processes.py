"""No child outlives the process that started it, nor what the child started itself: real processes,
a parent killed with SIGKILL, and a child whose own child stays behind when it exits."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from imgpipe_ops.process_logs import LogLimits
from imgpipe_ops.processes import GroupReaper, Process
from tests.waiting import wait_for

# A child that leaves a grandchild behind in its process group, as a dead image-worker leaves its codec processes.
LEAVES_A_GRANDCHILD = [
    sys.executable,
    "-c",
    "import subprocess; print(subprocess.Popen(['sleep', '600']).pid, flush=True)",
]
HAS_A_GRANDCHILD = [LEAVES_A_GRANDCHILD[0], "-c", LEAVES_A_GRANDCHILD[2] + "; import time; time.sleep(600)"]


def running(pid: int) -> bool:
    """Alive, and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_left(*pids: int) -> None:
    for pid in pids:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


def grandchild_of(log: Path) -> int:
    return wait_for(
        lambda: log.exists() and log.read_text().strip() and int(log.read_text()), 10, "the grandchild's pid"
    )


def killed_parent(tmp_path: Path, reaper: bool) -> list[int]:
    """Starts a Python process that starts HAS_A_GRANDCHILD through Process, kills it with SIGKILL, and
    returns the pids of its child and grandchild."""
    log, out = tmp_path / "child.log", tmp_path / "pids"
    code = textwrap.dedent(f"""
        import time
        from imgpipe_ops.processes import GroupReaper, Process
        child = Process("parent", {HAS_A_GRANDCHILD!r}, log={str(log)!r}, reaper=GroupReaper() if {reaper} else None)
        open({str(out)!r}, "w").write(str(child.start().pid))
        time.sleep(600)
    """)
    popen = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        pids = [
            wait_for(lambda: out.exists() and out.read_text() and int(out.read_text()), 30, "the child's pid"),
            grandchild_of(log),
        ]
        assert all(running(pid) for pid in pids)
    finally:
        popen.kill()
        popen.wait()
    return pids


def test_a_child_gets_sigkill_when_its_parent_is_killed(tmp_path):
    child, grandchild = killed_parent(tmp_path, reaper=False)
    try:
        wait_for(lambda: not running(child), 5, "the child gone")
    finally:
        kill_left(child, grandchild)


def test_the_reaper_kills_what_the_child_started_when_the_parent_is_killed(tmp_path):
    child, grandchild = killed_parent(tmp_path, reaper=True)
    try:
        wait_for(lambda: not running(child) and not running(grandchild), 5, "the child and grandchild gone")
    finally:
        kill_left(child, grandchild)


def test_a_child_that_exits_takes_its_process_group_with_it(tmp_path):
    reaper = GroupReaper()
    process = Process("leaver", LEAVES_A_GRANDCHILD, log=tmp_path / "child.log", reaper=reaper).start()
    grandchild = grandchild_of(tmp_path / "child.log")
    try:
        wait_for(lambda: not process.alive(), 10, "the child exited")
        wait_for(lambda: not running(grandchild), 5, "the grandchild gone")
    finally:
        process.kill()
        reaper.close()
        kill_left(grandchild)


def test_a_stopped_child_is_forgotten_by_the_reaper_which_then_ends(tmp_path):
    reaper = GroupReaper()
    process = Process("sleeper", ["sleep", "600"], reaper=reaper).start()
    process.stop(grace=5)
    assert process.returncode == -signal.SIGTERM
    reaper.close()
    assert not running(reaper.pid)


# 2,000 numbered lines of 100 bytes each, to stdout and stderr in turn, as a chatty process writes them.
TALKER = [
    sys.executable,
    "-c",
    "import sys\nfor n in range(2000): print(f'{n:06d} ' + 'x' * 92, file=(sys.stdout, sys.stderr)[n % 2], flush=True)",
]


def test_a_process_log_is_rotated_at_its_size_keeping_its_latest_lines(tmp_path):
    log = tmp_path / "talker.log"
    process = Process("talker", TALKER, log=log, log_limits=LogLimits(max_bytes=20_000, backups=2)).start()
    try:
        wait_for(lambda: not process.alive(), 30, "the talker done")
    finally:
        process.kill()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["talker.log", "talker.log.1", "talker.log.2"]
    kept = [
        line
        for path in (log.with_name("talker.log.2"), log.with_name("talker.log.1"), log)
        for line in path.read_text().splitlines()
    ]
    assert all(path.stat().st_size <= 20_000 for path in tmp_path.iterdir())
    numbers = [int(line.split()[0]) for line in kept]
    assert numbers == list(range(numbers[0], 2000)) and len(numbers) >= 2 * 20_000 // 100
    assert process.last_lines(3) == kept[-3:]
