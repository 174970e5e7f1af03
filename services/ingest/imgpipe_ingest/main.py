import uvicorn

from imgpipe_bus import ensure_topics
from imgpipe_ingest.api import create_api
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.logs import configure_logging
from imgpipe_runtime.settings import load_settings


def main() -> None:
    settings = load_settings(Settings, "ingest")
    configure_logging("ingest", settings.log)
    ensure_topics(settings.kafka)
    uvicorn.run(create_api(settings), host=settings.host, port=settings.port, log_config=None, access_log=settings.log.access)


if __name__ == "__main__":
    main()
