"""MongoDB is the source of truth: requests that stopped moving are driven again from their stored input.

- PENDING or PROCESSING with no progress for ``stall_s``: every row not yet done is published again
  (ingest may have died before publishing, or the broker may have lost its messages).
- After ``max_rounds`` such rounds, the rows still missing are recorded as failed with a reason, and
  the request completes.
- A finished request whose completion event was never published is published again.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from imgpipe_assembler.handlers import Adapters, complete_if_done, record_results, unprocessed_results
from imgpipe_schemas import RequestStatus, RowSubmitted
from imgpipe_schemas.topics import ROWS_SUBMITTED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcilePolicy:
    stall_s: float
    max_rounds: int


async def reconcile(adapters: Adapters, *, policy: ReconcilePolicy, now: datetime | None = None) -> dict[str, int]:
    """One pass; returns how many requests it re-drove, gave up rows of, and re-announced."""
    now = now or datetime.now(UTC)
    before = now - timedelta(seconds=policy.stall_s)
    counts = {"redriven": 0, "gave_up": 0, "republished": 0}
    for status in (RequestStatus.PENDING, RequestStatus.PROCESSING):
        for request in await adapters.store.stalled(status, before):
            request_id = request["_id"]
            missing = await adapters.store.rows_not_done(request_id)
            if request.get("reconcile_rounds", 0) >= policy.max_rounds:
                reason = f"not processed after {policy.max_rounds} re-drives {policy.stall_s:.0f} s apart"
                log.error("request %s: giving up on %d row(s): %s", request_id, len(missing), reason)
                if missing:
                    await record_results([unprocessed_results(request_id, row, reason) for row in missing], adapters)
                # Finishes it even if some rows never arrived (a direct producer's request).
                await complete_if_done(request_id, adapters, give_up=True)
                counts["gave_up"] += 1
                continue
            if missing:
                log.warning("request %s: no progress since %s; re-publishing %d row(s)", request_id, before, len(missing))
                await adapters.producer.publish_many(ROWS_SUBMITTED, [_row_event(request, row) for row in missing])
            else:  # every row is in, yet it is not finished: its live counts may have missed a batch
                await adapters.store.recount(request)
            await adapters.store.mark_redriven(request_id, now)
            await complete_if_done(request_id, adapters)
            counts["redriven"] += 1
    for request in await adapters.store.unpublished_completions(before):
        await complete_if_done(request["_id"], adapters)
        counts["republished"] += 1
    return counts


def _row_event(request: dict, row: dict) -> RowSubmitted:
    return RowSubmitted(
        request_id=uuid.UUID(request["_id"]),
        row_index=row["row_index"],
        serial=row["serial"],
        product_name=row["product_name"],
        image_urls=row["image_urls"],
        quality=row.get("quality") or request.get("quality") or 50,
        output_format=row.get("output_format") or request.get("output_format") or "jpeg",
    )
