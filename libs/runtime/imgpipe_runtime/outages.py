"""Which failures are outages: the database or the file store cannot serve anyone right now, whatever the
message or request in hand. An outage is waited out (a consumer retries with capped backoff and
dead-letters nothing; ingest answers 503 with Retry-After); any other failure is the work's own.

A lost connection is the plain case. A database that answers but cannot write is the same outage: a full
disk, a quota, a primary that stepped down or is shutting down. So is a file store on a full disk or over
its quota. Retrying such work later succeeds once the operator has made room; dead-lettering it would
turn every message in flight into a failure that needs a replay, and a 500 would tell a client that its
upload was at fault.
"""

import errno

from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure

# MongoDB's codes for "the server cannot do this now": NotWritablePrimary and its kin, shut-downs and
# step-downs, network and time-limit errors (pymongo's own retryable codes), a write concern that timed
# out, and OutOfDiskSpace. InternalError is how the embedded database (SecantusDB) answers every command
# but ping once its storage engine failed, as it does on a full disk (measured: WiredTiger panics on
# ENOSPC and the process must be restarted, which `imgpipe run` does); on MongoDB it is a server fault,
# never the request's.
UNAVAILABLE_CODES = frozenset(
    {
        1,  # InternalError
        6,  # HostUnreachable
        7,  # HostNotFound
        64,  # WriteConcernTimeout
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        189,  # PrimarySteppedDown
        262,  # ExceededTimeLimit
        9001,  # SocketException
        10058,  # LegacyNotPrimary
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        12501,  # quota exceeded (a database's storage quota)
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
        14031,  # OutOfDiskSpace
    }
)
# A file system that cannot take more bytes: full, over the user's quota, or remounted read-only.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database or the file store is unavailable, not that the work is wrong."""
    if isinstance(exc, ConnectionFailure):
        return True
    if isinstance(exc, BulkWriteError):
        details = exc.details or {}
        errors = [*details.get("writeErrors", ()), *details.get("writeConcernErrors", ())]
        return any(error.get("code") in UNAVAILABLE_CODES for error in errors)
    if isinstance(exc, OperationFailure):
        return exc.code in UNAVAILABLE_CODES
    if isinstance(exc, OSError):
        return exc.errno in STORAGE_ERRNOS
    return False
