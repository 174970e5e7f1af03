"""One logging set-up for every service: stdlib logging rendered by structlog.

Lines about a request carry ``request_id`` (and ``row_index`` where there is one) as fields of their own,
in both formats, so that an operator can follow one request through every service: the code handling an
event or an API call binds them once with ``about_request``, and every line logged inside carries them.
"""

import contextlib
import logging
import sys
from collections.abc import Iterator
from uuid import UUID

import structlog
from structlog.types import EventDict, Processor

from imgpipe_runtime.settings import LogSettings


def configure_logging(service: str, settings: LogSettings) -> None:
    def add_service(_: object, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_service,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.processors.JSONRenderer() if settings.json_lines else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextlib.contextmanager
def about_request(request_id: str | UUID | None, row_index: int | None = None) -> Iterator[None]:
    """Every line logged inside (by this task) carries ``request_id`` and, if given, ``row_index``."""
    fields: dict[str, str | int] = {"request_id": str(request_id)} if request_id is not None else {}
    if row_index is not None:
        fields["row_index"] = row_index
    with structlog.contextvars.bound_contextvars(**fields):
        yield
