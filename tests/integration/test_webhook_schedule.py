"""The webhook schedule kept in MongoDB: attempts, leases and dead letters, with the clock passed in."""

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import AutoReconnect, NotPrimaryError, OperationFailure, WriteConcernError

from imgpipe_bus import Consumed
from imgpipe_bus.dead_letters import REPLAY_HEADER
from imgpipe_notifier.adapters.deliveries import DeliveryLog
from imgpipe_notifier.handlers import Adapters, Schedule, accept, deliver_due, webhook_body
from imgpipe_runtime.mongo import connect
from imgpipe_schemas import Progress, RequestCompleted

START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SCHEDULE = Schedule(delays_s=(5, 30), lease_s=60)


def at(moment: datetime):
    """A clock that stands still."""
    return lambda: moment


class ScriptedSender:
    """Answers each URL's POSTs from its script, and records every POST."""

    def __init__(self, outcomes: list) -> None:
        self.outcomes = list(outcomes)
        self.posts: list[tuple[str, str, bytes]] = []

    async def post(self, url: str, message_id: str, body: bytes):
        self.posts.append((url, message_id, body))
        await asyncio.sleep(0)
        return self.outcomes.pop(0) if self.outcomes else 200


class KeptDeadLetters:
    def __init__(self) -> None:
        self.sent = []

    async def send(self, letter, failure) -> None:
        self.sent.append((letter, failure))


@pytest.fixture
async def deliveries(mongo_settings):
    db = connect(mongo_settings)
    yield DeliveryLog(db)
    await db.client.drop_database(mongo_settings.database)
    await db.client.close()


def completed() -> RequestCompleted:
    return RequestCompleted(
        request_id=uuid.uuid4(),
        status="SUCCESS",
        output_file_url="http://api/o.csv",
        progress=Progress(rows_total=1, rows_done=1, images_total=1, images_ok=1),
        webhook_url="http://hooks.test/h",
    )


def letter_of(event: RequestCompleted) -> Consumed:
    return Consumed(
        "imgpipe.requests.completed",
        2,
        41,
        1795000000.0,
        str(event.request_id).encode(),
        event.model_dump_json().encode(),
        [("trace", b"abc")],
    )


def outbox_for(deliveries, outcomes) -> Adapters:
    return Adapters(deliveries, ScriptedSender(outcomes), KeptDeadLetters(), SCHEDULE, default_url=None)


async def stored(deliveries, webhook_id) -> dict:
    return await deliveries._deliveries.find_one({"_id": webhook_id})


async def test_retried_on_the_schedule_with_one_id_and_body_until_2xx(deliveries):
    outbox, event = outbox_for(deliveries, [500, "timeout", 204]), completed()
    assert await accept(event, letter_of(event), outbox, now=START) == "retrying"
    assert await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(seconds=4))) == 0
    assert await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(seconds=5))) == 1
    assert await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(seconds=34))) == 0
    assert await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(seconds=35))) == 1
    assert {(message_id, body) for _, message_id, body in outbox.sender.posts} == {
        (str(event.event_id), webhook_body(event))
    }
    delivery = await stored(deliveries, str(event.event_id))
    assert delivery["state"] == "delivered"
    assert [attempt["outcome"] for attempt in delivery["attempts"]] == [500, "timeout", 204]
    assert await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(days=1))) == 0
    assert outbox.dead_letters.sent == []


async def test_410_stops_at_once(deliveries):
    outbox, event = outbox_for(deliveries, [410]), completed()
    assert await accept(event, letter_of(event), outbox, now=START) == "gone"
    assert await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(days=1))) == 0
    assert len(outbox.sender.posts) == 1 and outbox.dead_letters.sent == []


@pytest.mark.parametrize(
    ("outcomes", "attempts"), [([400], 1), (["blocked_address: 10.0.0.1"], 1), ([503, 503, 503], 3)]
)
async def test_a_refusal_or_the_end_of_the_schedule_dead_letters_the_event(deliveries, outcomes, attempts):
    outbox, event = outbox_for(deliveries, outcomes), completed()
    await accept(event, letter_of(event), outbox, now=START)
    for seconds in (5, 35):
        await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(seconds=seconds)))
    assert len(outbox.sender.posts) == attempts
    assert (await stored(deliveries, str(event.event_id)))["state"] == "failed"
    [(letter, failure)] = outbox.dead_letters.sent
    assert letter == letter_of(event)
    assert failure.attempts == attempts and f"failed after {attempts} attempt(s)" in str(failure.exception)
    assert failure.first_failure == START


async def test_a_redelivered_completion_is_not_sent_again(deliveries):
    outbox, event = outbox_for(deliveries, [200]), completed()
    assert await accept(event, letter_of(event), outbox, now=START) == "delivered"
    assert await accept(event, letter_of(event), outbox, now=START) is None
    assert len(outbox.sender.posts) == 1


async def test_a_delivery_left_by_a_dead_notifier_is_taken_up_when_its_lease_ends(deliveries):
    event = completed()
    await deliveries.open(
        str(event.event_id), str(event.request_id), "http://hooks.test/h", b"{}", letter_of(event), START, 60
    )
    outbox = outbox_for(deliveries, [200])
    assert await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(seconds=59))) == 0
    assert await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(seconds=60))) == 1
    assert (await stored(deliveries, str(event.event_id)))["state"] == "delivered"


async def test_two_notifiers_never_attempt_the_same_delivery_at_once(deliveries):
    events = [completed() for _ in range(6)]
    for event in events:
        await deliveries.open(
            str(event.event_id), str(event.request_id), "http://hooks.test/h", b"{}", letter_of(event), START, 0
        )
    first, second = outbox_for(deliveries, []), outbox_for(deliveries, [])
    counts = await asyncio.gather(
        deliver_due(first, concurrency=2, clock=at(START)), deliver_due(second, concurrency=2, clock=at(START))
    )
    assert sum(counts) == 6
    posted = [message_id for _, message_id, _ in first.sender.posts + second.sender.posts]
    assert sorted(posted) == sorted(str(event.event_id) for event in events)


def replayed(letter: Consumed, count: int, offset: int) -> Consumed:
    """The letter as ``imgpipe dlq replay`` puts it back on its topic: a new offset, the replay count."""
    headers = [(key, value) for key, value in letter.headers if key != REPLAY_HEADER] + [(REPLAY_HEADER, b"%d" % count)]
    return dataclasses.replace(letter, offset=offset, headers=headers)


async def test_a_replayed_completion_reopens_its_failed_delivery_on_a_new_schedule(deliveries):
    outbox, event = outbox_for(deliveries, [503, 503, 503, 500, 204]), completed()
    await accept(event, letter_of(event), outbox, now=START)
    for seconds in (5, 35):
        await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(seconds=seconds)))
    assert (await stored(deliveries, str(event.event_id)))["state"] == "failed"

    later = START + timedelta(hours=1)
    replay = replayed(letter_of(event), 1, offset=99)
    assert await accept(event, replay, outbox, now=later) == "retrying"
    assert await accept(event, replay, outbox, now=later) is None  # the replayed message delivered again
    assert await deliver_due(outbox, concurrency=4, clock=at(later + timedelta(seconds=5))) == 1
    delivery = await stored(deliveries, str(event.event_id))
    assert delivery["state"] == "delivered"
    assert [attempt["outcome"] for attempt in delivery["attempts"]] == [503, 503, 503, 500, 204]
    assert {message_id for _, message_id, _ in outbox.sender.posts} == {str(event.event_id)}
    assert len(outbox.dead_letters.sent) == 1


async def test_a_delivery_failed_again_after_a_replay_is_dead_lettered_with_its_replay_count(deliveries):
    outbox, event = outbox_for(deliveries, [400, 400]), completed()
    await accept(event, letter_of(event), outbox, now=START)
    later = START + timedelta(hours=1)
    assert await accept(event, replayed(letter_of(event), 1, offset=99), outbox, now=later) == "failed"
    [_, (letter, failure)] = outbox.dead_letters.sent
    assert letter.offset == 99 and letter.replays == 1
    assert failure.attempts == 1 and failure.first_failure == later


async def test_a_replay_of_a_delivery_still_on_its_schedule_changes_nothing(deliveries):
    outbox, event = outbox_for(deliveries, [503]), completed()
    assert await accept(event, letter_of(event), outbox, now=START) == "retrying"
    assert await accept(event, replayed(letter_of(event), 1, offset=99), outbox, now=START) is None
    assert len(outbox.sender.posts) == 1


async def test_no_webhook_url_means_nothing_to_deliver(deliveries):
    outbox, event = outbox_for(deliveries, []), completed().model_copy(update={"webhook_url": None})
    assert await accept(event, letter_of(event), outbox, now=START) is None
    assert outbox.sender.posts == []


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


class SlowSender(ScriptedSender):
    """Each POST takes ``takes`` of the clock's time; while the ``nth`` is under way, ``during`` runs (say,
    another notifier's pass)."""

    def __init__(self, clock: Clock, takes: timedelta, nth: int, during) -> None:
        super().__init__([])
        self.clock, self.takes, self.nth, self.during = clock, takes, nth, during

    async def post(self, url: str, message_id: str, body: bytes):
        self.clock.moment += self.takes
        if len(self.posts) + 1 == self.nth:
            await self.during()
        return await super().post(url, message_id, body)


async def test_a_long_pass_claims_each_delivery_for_a_lease_from_its_own_claim(deliveries):
    """One pass attempts the due deliveries one after another, each POST taking 25 s of a 60 s lease: the
    third, claimed 50 s into the pass, must still be leased while it is posted at 75 s, so that another
    notifier's pass at that moment leaves it alone and takes only the fourth."""
    events = [completed() for _ in range(4)]
    for event in events:
        await deliveries.open(
            str(event.event_id), str(event.request_id), "http://hooks.test/h", b"{}", letter_of(event), START, 0
        )
    clock = Clock(START)
    rival = outbox_for(deliveries, [])
    rival_pass = lambda: deliver_due(rival, concurrency=4, clock=clock)  # noqa: E731
    sender = SlowSender(clock, timedelta(seconds=25), nth=3, during=rival_pass)
    slow = Adapters(deliveries, sender, KeptDeadLetters(), SCHEDULE, default_url=None)
    assert await deliver_due(slow, concurrency=1, clock=clock) == 3
    posted = [message_id for _, message_id, _ in slow.sender.posts + rival.sender.posts]
    assert sorted(posted) == sorted(str(event.event_id) for event in events)  # each once
    assert len(rival.sender.posts) == 1
    attempts = [(await stored(deliveries, str(event.event_id)))["attempts"] for event in events]
    assert all(len(each) == 1 and each[0]["outcome"] == 200 for each in attempts)
    # Each attempt is recorded at its own claim: 0, 25 and 50 s into the pass, the rival's at 75 s.
    assert sorted(each[0]["at"].replace(tzinfo=UTC) for each in attempts) == [
        START + timedelta(seconds=seconds) for seconds in (0, 25, 50, 75)
    ]


async def test_a_replay_of_a_delivered_completion_sends_nothing(deliveries):
    outbox, event = outbox_for(deliveries, [204]), completed()
    assert await accept(event, letter_of(event), outbox, now=START) == "delivered"
    later = START + timedelta(hours=1)
    assert await accept(event, replayed(letter_of(event), 1, offset=99), outbox, now=later) is None
    assert await deliver_due(outbox, concurrency=4, clock=at(later + timedelta(days=1))) == 0
    assert len(outbox.sender.posts) == 1
    assert (await stored(deliveries, str(event.event_id)))["state"] == "delivered"


class FlakyRecords:
    """The delivery log, whose first ``failures`` records of an attempt fail as a database that answers
    but cannot write."""

    def __init__(self, deliveries: DeliveryLog, failures: int) -> None:
        self._deliveries, self.failures = deliveries, failures

    def __getattr__(self, name):
        return getattr(self._deliveries, name)

    async def record(self, *args, **kwargs) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationFailure("not writable", code=14031)
        await self._deliveries.record(*args, **kwargs)


@pytest.mark.parametrize(("outcomes", "state"), [([204], "delivered"), ([400], "failed")])
async def test_an_attempt_whose_record_fails_is_recorded_not_made_again(deliveries, outcomes, state):
    """A 2xx (or a final refusal, dead-lettered) whose record the database refuses a few times: recorded
    once it can be, never posted again, never dead-lettered twice."""
    outbox, event = outbox_for(deliveries, outcomes), completed()
    outbox = dataclasses.replace(outbox, deliveries=FlakyRecords(deliveries, failures=2))
    assert await accept(event, letter_of(event), outbox, now=START) == state
    assert await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(days=1))) == 0
    assert len(outbox.sender.posts) == 1
    assert len(outbox.dead_letters.sent) == (state == "failed")
    assert (await stored(deliveries, str(event.event_id)))["state"] == state


def test_every_database_error_is_an_outage_for_the_notifier():
    """Not only a lost connection: a completion is never dead-lettered because its delivery could not be
    written for a while."""
    from imgpipe_notifier.main import is_notifier_outage

    for error in (
        OperationFailure("a write refused", code=2),
        WriteConcernError("w"),
        NotPrimaryError("no"),
        AutoReconnect("x"),
    ):
        assert is_notifier_outage(error)
    assert not is_notifier_outage(ValueError("a bug"))


async def test_a_delivery_whose_record_waits_past_its_lease_is_not_attempted_again_meanwhile(deliveries):
    """The database refuses the record of a 2xx for longer than the lease: a pass that finds the lease run
    out leaves the delivery alone, and the record lands once the database writes again."""
    outbox, event = outbox_for(deliveries, [204]), completed()
    flaky = FlakyRecords(deliveries, failures=10**6)
    outbox = dataclasses.replace(outbox, deliveries=flaky)
    first = asyncio.ensure_future(accept(event, letter_of(event), outbox, now=START))
    await eventually_true(lambda: len(outbox.sender.posts) == 1 and str(event.event_id) in outbox.recording)
    assert await deliver_due(outbox, concurrency=4, clock=at(START + timedelta(seconds=SCHEDULE.lease_s + 1))) == 0
    flaky.failures = 0
    assert await asyncio.wait_for(first, timeout=30) == "delivered"
    assert len(outbox.sender.posts) == 1 and not outbox.recording
    assert (await stored(deliveries, str(event.event_id)))["state"] == "delivered"


async def eventually_true(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
