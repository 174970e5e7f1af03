"""Sources and subscribers that accept a connection and never answer, on 127.0.0.1."""

import asyncio

import pytest


class StallingSources:
    """Servers on 127.0.0.1 that accept every connection and never send a byte; they count the connections
    open at once, in all and per port."""

    def __init__(self) -> None:
        self.open: dict[int, int] = {}
        self.peak = 0
        self.peak_per_port = 0
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._holding: set[asyncio.Task] = set()

    async def start(self, count: int) -> list[int]:
        for _ in range(count):
            self._servers.append(await asyncio.start_server(self._hold, "127.0.0.1", 0))
        return [server.sockets[0].getsockname()[1] for server in self._servers]

    @property
    def total_open(self) -> int:
        return sum(self.open.values())

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("sockname")[1]
        self._writers.add(writer)
        if (task := asyncio.current_task()) is not None:
            self._holding.add(task)
        self.open[port] = self.open.get(port, 0) + 1
        self.peak, self.peak_per_port = max(self.peak, self.total_open), max(self.peak_per_port, self.open[port])
        try:
            while await reader.read(65536):  # until the client lets go
                pass
        except ConnectionError:
            pass
        finally:
            self.open[port] -= 1
            self._writers.discard(writer)
            self._holding.discard(asyncio.current_task())
            writer.close()

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._holding)
        for server in self._servers:
            await server.wait_closed()


@pytest.fixture
async def stalling():
    sources = StallingSources()
    yield sources
    await sources.stop()
