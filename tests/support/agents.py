"""A faust app with one agent over the bus library's stages, for tests of how agents handle and commit."""

import faust

from imgpipe_bus import BusSettings, EventProducer, agent_stage, create_app, faust_topic, handle_batches, handle_each
from imgpipe_schemas.topics import REQUESTS_ACCEPTED


async def run_agent(settings: BusSettings, group: str, batches: bool, handle_one) -> faust.App:
    """An app whose one agent handles REQUESTS_ACCEPTED with handle_each (concurrency 4) or handle_batches."""
    app = create_app(group, settings)
    producer = EventProducer(settings)
    app.close_on_shutdown(producer.close)
    stage = agent_stage(app, REQUESTS_ACCEPTED, producer)

    async def each(event, letter) -> None:
        await handle_one(event)

    async def batch(events) -> None:
        for event in events:
            await handle_one(event)

    @app.agent(faust_topic(app, REQUESTS_ACCEPTED), concurrency=1 if batches else 4)
    async def agent(stream):
        if batches:
            await handle_batches(stream, stage, batch, max_events=3, within_s=0.02)
        else:
            await handle_each(stream, stage, each)

    await app.start()
    return app
