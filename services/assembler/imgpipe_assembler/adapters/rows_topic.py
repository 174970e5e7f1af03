"""The rows topic as the reconciler sees it: where each published row is now."""

import asyncio
from collections.abc import Mapping

from imgpipe_bus import BusSettings
from imgpipe_bus.positions import Position, State, caught_up, states
from imgpipe_runtime.documents import row_id
from imgpipe_schemas.topics import ASSEMBLER_GROUP, IMAGE_WORKER_GROUP, ROWS_PROCESSED, ROWS_SUBMITTED


class RowsTopic:
    def __init__(
        self, settings: BusSettings, group: str = IMAGE_WORKER_GROUP, results_group: str = ASSEMBLER_GROUP
    ) -> None:
        self._settings = settings
        self._group = group
        self._results_group = results_group

    async def states(self, request_id: str, published: Mapping[int, tuple[int, int]]) -> dict[int, State]:
        """For each row index published at (partition, offset): waiting for a worker, read by one, gone, or
        unknown (the broker did not say in time)."""
        if not published:
            return {}
        # A row event's key is its row id (RowSubmitted.partition_key).
        messages = {Position(*where): row_id(request_id, index).encode() for index, where in published.items()}
        found = await asyncio.to_thread(states, self._settings, self._group, ROWS_SUBMITTED.name, messages)
        return {index: found[Position(*where)] for index, where in published.items()}

    async def results_read(self) -> bool:
        """True when the assembler has read every row result published so far: a row whose event a worker
        read before this call and that still has no result has then lost it."""
        return await asyncio.to_thread(caught_up, self._settings, self._results_group, ROWS_PROCESSED.name)
