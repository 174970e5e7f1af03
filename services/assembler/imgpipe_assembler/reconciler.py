"""MongoDB is the source of truth: rows the pipeline lost are driven again from their stored input.

A request with no progress for ``stall_s`` is looked at row by row; each row not yet done is
- **waiting** while its event is still in the rows topic and the image workers have not read past it: it
  is queued behind other work, or being handled. It is left alone however long it waits.
- **lost** when it was never published (ingest stopped first), or the broker says its event is gone (the
  broker lost it): it is published again at once.
- **read** when the workers read its event but no result arrived: its result may be queued behind others
  on its way to the assembler, or was dead-lettered or lost with the broker. It is published again once it
  has been read and unanswered for ``stall_s`` and the assembler has read every result published so far.
- **unknown** when the broker does not say in time where its event is (a slow broker, or one that
  restarted empty and does not refuse offsets past its log's end): it is published again once it has been
  unknown for ``stall_s``.
Each row counts its own rounds: a re-drive of a row that was published and then lost or read without a
result. A row never published, and a row whose state is unknown, counts none. A row due again after
``max_rounds`` rounds is recorded as failed with the reason, and the request finishes once its other rows
are in. A finished request whose completion event was never published is published again; one published
whose webhook delivery the notifier has not recorded a stall later (the completion was lost with the
broker) is published again, with the same event id, a stall after each try.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from imgpipe_assembler.adapters.requests import ProgressStore
from imgpipe_assembler.adapters.rows_topic import RowsTopic
from imgpipe_assembler.handlers import Adapters, announce, complete_if_done, record_results, unprocessed_results
from imgpipe_bus.positions import State
from imgpipe_runtime.documents import image_options
from imgpipe_runtime.logs import about_request
from imgpipe_schemas import FINISHED, RequestStatus, RowSubmitted
from imgpipe_schemas.topics import ROWS_SUBMITTED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcilePolicy:
    stall_s: float
    max_rounds: int
    webhook_by_default: bool = False  # the notifier sends a completion without a webhook URL of its own


async def reconcile(
    adapters: Adapters, rows_topic: RowsTopic, *, policy: ReconcilePolicy, now: datetime | None = None
) -> dict[str, int]:
    """One pass; returns how many stalled requests it re-drove, found waiting, gave up rows of, recounted,
    and re-announced."""
    now = now or datetime.now(UTC)
    before = now - timedelta(seconds=policy.stall_s)
    counts = {
        "redriven": 0,
        "waiting": 0,
        "gave_up": 0,
        "recounted": 0,
        "republished": 0,
        "reannounced": 0,
        "failed": 0,
    }
    for status in (RequestStatus.PENDING, RequestStatus.PROCESSING):
        for request in await adapters.store.stalled(status, before):
            with about_request(request["_id"]):
                try:
                    counts[await _reconcile_request(request, adapters, rows_topic, policy, now)] += 1
                except Exception:  # one request's trouble must not hold up the others, nor stop the service
                    log.exception("request %s not reconciled in this pass", request["_id"])
                    counts["failed"] += 1
    for request in await adapters.store.unpublished_completions(before):
        with about_request(request["_id"]):
            await complete_if_done(request["_id"], adapters)
        counts["republished"] += 1
    for request in await adapters.store.undelivered_completions(before):
        with about_request(request["_id"]):
            try:
                counts["reannounced"] += await _announce_undelivered(
                    request["_id"], request["completion_event_id"], adapters, policy, now
                )
            except Exception:  # one request's trouble must not hold up the others, nor stop the service
                log.exception("request %s: its delivery not looked for in this pass", request["_id"])
                counts["failed"] += 1
    return counts


async def _announce_undelivered(
    request_id: str, event_id: str, adapters: Adapters, policy: ReconcilePolicy, now: datetime
) -> bool:
    """Publishes again the completion ``event_id`` if the notifier never recorded its delivery; True if it
    did. Read again first: an update fixed since the pass began is the one to announce (by the assembler's
    consumer, which announces it itself). After ``max_rounds`` tries it is left, loudly: the notifier is
    not running, or is not given this completion's URL."""
    store = adapters.store
    request = await store.get(request_id)
    if request is None or request.get("completion_event_id") != event_id or not request.get("delivery_pending"):
        return False
    if not request.get("completion_published"):
        return False  # published again as unpublished, above
    if not (request.get("webhook_url") or policy.webhook_by_default) or await store.delivery_recorded(request):
        await store.confirm_delivery(request_id, event_id)
        return False
    if request.get("reannounced", 0) >= policy.max_rounds:
        log.error(
            "request %s: no webhook delivery of its %s after it was published %d more times; is the notifier running?",
            request_id,
            request["completion_type"],
            policy.max_rounds,
        )
        await store.confirm_delivery(request_id, event_id)
        return False
    log.warning(
        "request %s: its %s has no webhook delivery yet; published again", request_id, request["completion_type"]
    )
    await announce(request, adapters)
    await store.await_delivery(request_id, event_id, now)
    return True


async def _reconcile_request(
    request: dict, adapters: Adapters, rows_topic: RowsTopic, policy: ReconcilePolicy, now: datetime
) -> str:
    request_id, store = request["_id"], adapters.store
    missing = await store.rows_not_done(request_id)
    published = await store.published_positions(request_id)
    indexes = [row["row_index"] for row in missing]
    found = await rows_topic.states(request_id, {index: published[index] for index in indexes if index in published})
    lost = [row for row in missing if found.get(row["row_index"], State.GONE) == State.GONE]
    unanswered = [row for row in missing if found.get(row["row_index"]) in (State.READ, State.UNKNOWN)]
    waiting = len(missing) - len(lost) - len(unanswered)
    ripe = await _ripe(request, unanswered, store, policy, now)
    if any(found[row["row_index"]] == State.READ for row in ripe) and not await rows_topic.results_read():
        # Their results may be queued for the assembler: they stay noted and are looked at again next pass.
        ripe = [row for row in ripe if found[row["row_index"]] == State.UNKNOWN]
    redrive = sorted(lost + ripe, key=lambda row: row["row_index"])
    if redrive:
        # The other unanswered rows stay noted, from now: each gets a stall of its own.
        rest = [row["row_index"] for row in unanswered if row not in ripe]
        counted = {
            row["row_index"]
            for row in redrive
            if row["row_index"] in published and found[row["row_index"]] != State.UNKNOWN
        }
        return await _redrive(request, redrive, counted, rest, adapters, policy, now)
    if missing:
        log.debug(
            "request %s: %d row(s) wait in the rows topic, %d read and not yet answered",
            request_id,
            waiting,
            len(missing) - waiting,
        )
        return "waiting"
    if request.get("rows_accepted", request["rows_total"]) < request["rows_total"]:
        # An upload whose rows are still being accepted: ingest stores them, and resumes an acceptance
        # cut short; no round is counted, however long it takes.
        return "waiting"
    if await store.rows_known(request) < request["rows_total"]:
        # Rows a direct producer never sent: nothing to re-drive, so each stall counts as a round.
        if request.get("missing_rows_stalls", 0) >= policy.max_rounds:
            log.error("request %s: giving up on the rows that never arrived", request_id)
            await complete_if_done(request_id, adapters, give_up=True)
            return "gave_up"
        await store.mark_redriven(request_id, now, rows_missing=True)
        return "waiting"
    # Every row is in, yet it is not finished: its live counts may have missed a batch.
    await store.recount(request)
    await complete_if_done(request_id, adapters)
    return "recounted"


async def _ripe(
    request: dict, unanswered: list[dict], store: ProgressStore, policy: ReconcilePolicy, now: datetime
) -> list[dict]:
    """The unanswered rows to publish again: those already unanswered a stall ago, whose results are not
    merely on their way. Rows first seen unanswered are noted, with the time, and wait for a later pass."""
    since = request.get("unanswered_since")
    if not unanswered:
        if since:
            await store.note_unanswered(request["_id"], None)
        return []
    noted = set(request.get("unanswered_rows") or ())
    due = since is not None and since.replace(tzinfo=UTC) <= now - timedelta(seconds=policy.stall_s)
    ripe = [row for row in unanswered if row["row_index"] in noted] if due else []
    if since is None or (due and not ripe):
        await store.note_unanswered(request["_id"], now, [row["row_index"] for row in unanswered])
    return ripe


async def _redrive(
    request: dict,
    rows: list[dict],
    counted: set[int],
    unanswered: list[int],
    adapters: Adapters,
    policy: ReconcilePolicy,
    now: datetime,
) -> str:
    """Publishes ``rows`` again; those in ``counted`` count a round each, and those out of rounds are
    recorded as failed instead."""
    request_id = request["_id"]
    # A request that finished since this pass read it is left alone. The rounds are counted once the rows
    # are published: a publish that fails counts none, and is tried again on the next pass.
    current = await adapters.store.get(request_id)
    if current is None or current["status"] in FINISHED:
        return "waiting"
    spent = [row for row in rows if row["row_index"] in counted and row.get("redrives", 0) >= policy.max_rounds]
    if spent:
        reason = f"not processed: lost again after {policy.max_rounds} re-drives"
        log.error("request %s: giving up on %d row(s): %s", request_id, len(spent), reason)
        await record_results([unprocessed_results(request_id, row, reason) for row in spent], adapters)
    events, invalid = [], []
    for row in rows:
        if row in spent:
            continue
        try:
            events.append(_row_event(request, row))
        except ValidationError as exc:  # stored before the events' bounds: it can never be sent
            invalid.append(unprocessed_results(request_id, row, f"not processed: not a valid row event: {exc}"))
    if invalid:
        log.error("request %s: %d stored row(s) are not valid row events; recorded as failed", request_id, len(invalid))
        await record_results(invalid, adapters)
    if events:
        log.warning("request %s: re-publishing %d lost or unanswered row(s)", request_id, len(events))
        positions = await adapters.producer.publish_many(ROWS_SUBMITTED, events)
        await adapters.store.record_publication(request_id, [event.row_index for event in events], positions)
        await adapters.store.count_redrives(
            request_id, [event.row_index for event in events if event.row_index in counted]
        )
    await adapters.store.mark_redriven(request_id, now, unanswered)
    await complete_if_done(request_id, adapters)
    return "gave_up" if spent and not events else "redriven"


def _row_event(request: dict, row: dict) -> RowSubmitted:
    return RowSubmitted(
        request_id=uuid.UUID(request["_id"]),
        row_index=row["row_index"],
        serial=row["serial"],
        product_name=row["product_name"],
        image_urls=row["image_urls"],
        quality=row.get("quality") or request.get("quality") or 50,
        output_format=row.get("output_format") or request.get("output_format") or "jpeg",
        image_options=image_options(row, request),
        apparel=row.get("apparel", False),
    )
