import uuid

import pytest

from imgpipe_notifier.handlers import DeliveryFailed, notify
from imgpipe_schemas import Progress, RequestCompleted


class FakeSender:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.ids = []

    async def post(self, url, message_id, body):
        self.ids.append(message_id)
        return self.outcomes.pop(0)


class FakeLog:
    def __init__(self):
        self.records = []
        self.states = {}

    async def record(self, webhook_id, request_id, url, outcome, state):
        self.records.append((outcome, state))
        self.states[webhook_id] = state

    async def state(self, webhook_id):
        return self.states.get(webhook_id)


def event():
    return RequestCompleted(
        request_id=uuid.uuid4(), status="SUCCESS", output_file_url="http://x/o.csv",
        progress=Progress(rows_total=1, rows_done=1, images_total=1, images_ok=1), webhook_url="http://hook",
    )


async def run(outcomes, schedule=(5, 30), log=None, completed=None):
    sender, log, slept = FakeSender(outcomes), log or FakeLog(), []

    async def sleep(seconds):
        slept.append(seconds)

    result = await notify(
        completed or event(), sender=sender, deliveries=log, default_url=None, schedule_s=schedule, sleep=sleep
    )
    return result, sender, log, slept


async def test_retries_on_the_schedule_with_one_webhook_id_until_2xx():
    result, sender, log, slept = await run([500, "timeout", 204])
    assert result == "delivered"
    assert slept == [0.0, 5, 30]
    assert len(set(sender.ids)) == 1
    assert log.records == [(500, "retrying"), ("timeout", "retrying"), (204, "delivered")]


async def test_410_stops_at_once():
    result, _, log, slept = await run([410])
    assert result == "gone" and slept == [0.0] and log.records == [(410, "gone")]


@pytest.mark.parametrize("outcomes", [[400], [503, 503, 503]])
async def test_a_refusal_or_the_end_of_the_schedule_dead_letters(outcomes):
    with pytest.raises(DeliveryFailed):
        await run(outcomes)


async def test_a_redelivered_completion_already_delivered_is_not_sent_again():
    completed, log = event(), FakeLog()
    await run([200], log=log, completed=completed)
    result, sender, _, _ = await run([200], log=log, completed=completed)
    assert result is None and sender.ids == []
