from imgpipe_bus.faust_internals import install_fetch_wait
from imgpipe_bus.fetch_wait import AdaptiveFetchWait


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_wait_is_short_while_records_flow_and_long_once_idle():
    clock = Clock()
    wait = AdaptiveFetchWait(busy_ms=10, idle_ms=250, idle_after_s=1.0, clock=clock)
    assert wait.observe(True) == 10
    clock.now += 0.5
    assert wait.observe(False) == 10  # a short gap between messages is not idleness
    clock.now += 0.6
    assert wait.observe(False) == 250
    assert wait.observe(True) == 10  # the first record back switches at once


class FakeFetcher:
    def __init__(self, outcomes: list[bool]) -> None:
        self._fetch_max_wait_ms = 1500
        self.outcomes = outcomes

    async def _proc_fetch_request(self, assignment, node_id, request) -> bool:
        return self.outcomes.pop(0)


async def test_installed_on_a_fetcher_each_fetch_sets_the_next_wait():
    clock = Clock()
    fetcher = FakeFetcher([False, True, False])
    install_fetch_wait(fetcher, AdaptiveFetchWait(busy_ms=10, idle_ms=250, idle_after_s=1.0, clock=clock))
    assert fetcher._fetch_max_wait_ms == 10
    clock.now += 2
    assert await fetcher._proc_fetch_request(None, 0, None) is False
    assert fetcher._fetch_max_wait_ms == 250
    assert await fetcher._proc_fetch_request(None, 0, None) is True
    assert fetcher._fetch_max_wait_ms == 10
    await fetcher._proc_fetch_request(None, 0, None)
    assert fetcher._fetch_max_wait_ms == 10
