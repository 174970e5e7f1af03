"""Batches of a faust stream that cost nothing while the stream is idle.

faust's ``Stream.take_events(max_, within)`` wakes up every ``within`` seconds whether or not anything
arrived: with the 20 ms that keeps a batch's latency low, each batch agent woke 50 times a second, and
the assembler's three of them were most of its idle CPU. This is the same buffering (events are acked
only once their batch has been handled, so nothing is committed before it is done), except that an
empty buffer waits for its first event without a timeout, and the ``within`` clock starts with it.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import faust
from mode.utils.futures import notify

from imgpipe_bus.faust_internals import read_passively, remove_processor


async def take_batches(
    agent_stream: faust.StreamT[Any], max_events: int, within_s: float
) -> AsyncIterator[Sequence[Any]]:
    """Lists of at most ``max_events`` events: flushed when full, or ``within_s`` after the first one."""
    # faust's Stream, whose private parts this drives; its annotations are narrower than what it accepts.
    stream: Any = agent_stream
    buffer: list[Any] = []
    events: list[Any] = []
    first, full, consumed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    consuming: asyncio.Future[None] | None = None

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        if consuming is not None:  # the batch being handled is not added to
            try:
                await consuming
            finally:
                consuming = None
        buffer.append(value)
        events.append(stream.current_event)
        first.set()
        if len(buffer) >= max_events:
            full.set()
            consumed.clear()
            await stream.wait(consumed)
        return value

    acks = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    read_passively(stream)
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(first)
            if not full.is_set():
                await stream.wait_for_stopped(full, timeout=within_s)
            if not buffer:
                continue
            consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
                for event in events:  # only a batch that was handled: one cut short is delivered again
                    await stream.ack(event)
            finally:
                buffer.clear()
                events.clear()
                first.clear()
                full.clear()
                notify(consuming)
                consumed.set()
    finally:
        stream.enable_acks = acks
        remove_processor(stream, add_to_buffer)
