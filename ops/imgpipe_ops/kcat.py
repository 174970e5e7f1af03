"""``imgpipe kcat ARGS…``: kcat with the librdkafka that the confluent-kafka wheel ships.

Debian's kcat links librdkafka 2.0, whose first request the embedded broker does not answer
("ApiVersionRequest failed"); the wheel's newer library speaks to it and to any Kafka.
"""

import os
import shutil
import sys
from pathlib import Path

import confluent_kafka


class KcatMissing(RuntimeError):
    pass


def wheel_library() -> Path | None:
    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    return next(iter(sorted(libs.glob("librdkafka*.so*"))), None)


def library_dir() -> Path | None:
    """A folder holding the wheel's library under the name kcat looks for."""
    library = wheel_library()
    if library is None:
        return None
    folder = Path(sys.prefix) / "share" / "imgpipe-kcat"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "librdkafka.so.1"
    if not link.exists() or link.resolve() != library:
        link.unlink(missing_ok=True)
        link.symlink_to(library)
    return folder


def exec_kcat(args: list[str]) -> None:
    binary = shutil.which("kcat") or shutil.which("kafkacat")
    if binary is None:
        raise KcatMissing("kcat is not installed (Debian/Ubuntu: apt-get install kcat; macOS: brew install kcat)")
    env = dict(os.environ)
    if folder := library_dir():
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(folder), env.get("LD_LIBRARY_PATH")]))
    os.execve(binary, [binary, *args], env)
