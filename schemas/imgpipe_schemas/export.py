"""Writes the JSON Schema document of every event: ``imgpipe-schemas [DIR]``."""

import json
import sys
from pathlib import Path

from imgpipe_schemas.events import EVENT_TYPES, SCHEMA_VERSION
from imgpipe_schemas.topics import TOPICS

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "json" / f"v{SCHEMA_VERSION}"


def documents() -> dict[str, str]:
    """File name → JSON text, exactly as committed."""
    topic_of = {topic.event: topic for topic in TOPICS}
    docs = {}
    for event_type, model in EVENT_TYPES.items():
        schema = model.model_json_schema(mode="serialization")
        topic = topic_of[model]
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"imgpipe/v{SCHEMA_VERSION}/{event_type}.json",
            "x-topic": topic.name,
            "x-key": topic.key,
            **schema,
        }
        docs[f"{event_type}.json"] = json.dumps(schema, indent=2, sort_keys=False) + "\n"
    return docs


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name, text in documents().items():
        (target / name).write_text(text)
        print(target / name)


if __name__ == "__main__":
    main()
