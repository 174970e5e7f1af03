import asyncio
import time


def wait_for(condition, timeout: float, what: str, poll_s: float = 0.05):
    """Polls ``condition`` until it returns something truthy, which is returned; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(poll_s)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def holds_for(condition, seconds: float, what: str, poll_s: float = 0.1) -> None:
    """Watches ``condition`` for ``seconds`` and fails the moment it stops holding: for what must not
    happen later (a duplicate webhook), which no single look can show."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            raise AssertionError(f"{what} stopped holding")
        time.sleep(poll_s)


async def eventually(condition, timeout: float, what: str, poll_s: float = 0.05) -> None:
    """wait_for inside an event loop: polls without blocking it, so that the loop's own tasks run meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(poll_s)
