import time


def wait_for(condition, timeout: float, what: str, poll_s: float = 0.05):
    """Polls ``condition`` until it returns something truthy, which is returned; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(poll_s)
    raise AssertionError(f"{what} did not happen within {timeout} s")
