"""The one way a faust service starts, shared by the image-worker, the assembler and the notifier."""

from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from pydantic_settings import BaseSettings

from imgpipe_bus.admin import ensure_topics
from imgpipe_bus.health import HealthSettings
from imgpipe_bus.settings import BusSettings
from imgpipe_bus.stream import ServiceApp, run_worker
from imgpipe_runtime.logs import configure_logging
from imgpipe_runtime.settings import LogSettings, load_settings


@runtime_checkable
class ServiceSettings(Protocol):
    """What every faust service's settings hold beside their own."""

    kafka: BusSettings
    log: LogSettings


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def run_service(
    name: str, settings_class: type[SettingsT], build_app: Callable[[SettingsT, HealthSettings], ServiceApp]
) -> None:
    """Settings first (a service that cannot start says why, one line per bad setting, exit code 2), then
    logging, the topics, and the app until SIGTERM or SIGINT, which drain it."""
    settings = load_settings(settings_class, name)
    if not isinstance(settings, ServiceSettings):
        raise TypeError(f"{settings_class.__qualname__} has no kafka and log settings")
    health = load_settings(HealthSettings, name)
    configure_logging(name, settings.log)
    ensure_topics(settings.kafka)
    run_worker(build_app(settings, health), settings.log.level)
