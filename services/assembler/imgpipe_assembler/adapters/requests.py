"""The assembler's stores over one database, one per job (results, completions, stalls): ProgressStore is
the three together, which the service wires and the integration tests use."""

from imgpipe_assembler.adapters.collections import ROWS_PER_READ, UNANSWERED_FIELDS, delivery_pending
from imgpipe_assembler.adapters.completions import CompletionStore
from imgpipe_assembler.adapters.results import DIRECT_COLUMNS, ResultStore
from imgpipe_assembler.adapters.stalls import StallStore

__all__ = ["DIRECT_COLUMNS", "ROWS_PER_READ", "UNANSWERED_FIELDS", "ProgressStore", "delivery_pending"]


class ProgressStore(ResultStore, CompletionStore, StallStore):
    """Every store of the assembler over one database."""
