"""The log file of a local process, bounded in size: ``<name>.log`` and at most ``backups`` older files
(``<name>.log.1`` the newest of them), each rotated out once it holds ``max_bytes``.

The child writes its output (stdout and stderr) to a pipe that the supervisor copies into the file a line
at a time, so that the file can be rotated under a child that never reopens it: a child writing to the file
itself would go on writing to the rotated one, or, after a truncation, leave a hole as large as before. A
database that logs a traceback for every failed command (as the embedded one does once its disk is full)
so fills a bounded space, not the disk.
"""

import logging
import logging.handlers
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# A longer line is written in pieces of this size.
LINE_BYTES = 64 * 1024
# How much of the end of a file is read for its last lines.
TAIL_BYTES = 256 * 1024

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogLimits:
    """At most ``backups + 1`` files of ``max_bytes`` each (``IMGPIPE_LOCAL_LOG_MAX_BYTES``, ``…_BACKUPS``)."""

    max_bytes: int = 10 * 1024 * 1024
    backups: int = 3


class _RotatingFile(logging.handlers.RotatingFileHandler):
    """A write that fails (the disk full) drops its line: the supervisor says so once, never per line."""

    dropped = 0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.dropped += 1
        if self.dropped == 1:
            log.warning("lines of %s are dropped: it cannot be written", self.baseFilename)


class ProcessLog:
    """One process's log, shared by its every start; ``follow`` copies a child's output into it."""

    def __init__(self, path: Path, limits: LogLimits = LogLimits()) -> None:
        self.path = path
        self._file = _RotatingFile(
            path, maxBytes=limits.max_bytes, backupCount=limits.backups, encoding="utf-8", delay=True
        )
        self._file.setFormatter(logging.Formatter("%(message)s"))

    def write(self, line: str) -> None:
        self._file.emit(logging.makeLogRecord({"msg": line.rstrip("\n")}))

    def follow(self, output: BinaryIO) -> threading.Thread:
        """Copies ``output`` (a child's pipe) line by line until its end, then closes it."""

        def copy() -> None:
            with output:
                for line in iter(lambda: output.readline(LINE_BYTES), b""):
                    self.write(line.decode("utf-8", errors="replace"))

        thread = threading.Thread(target=copy, daemon=True, name=f"log-{self.path.name}")
        thread.start()
        return thread

    def last_lines(self, count: int = 20) -> list[str]:
        """The last ``count`` lines written, from the rotated file too when the current one has fewer."""
        lines: list[str] = []
        for path in (self.path, self.path.with_name(f"{self.path.name}.1")):
            try:
                with open(path, "rb") as file:
                    file.seek(max(0, file.seek(0, 2) - TAIL_BYTES))
                    tail = file.read().decode("utf-8", errors="replace").splitlines()
            except OSError:
                continue
            lines = tail[-(count - len(lines)) :] + lines
            if len(lines) >= count:
                break
        return lines

    def close(self) -> None:
        self._file.close()
