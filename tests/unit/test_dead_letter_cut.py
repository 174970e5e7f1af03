"""A dead letter too large to store is stored cut short, says so, and is never replayed."""

import pytest

from imgpipe_bus.dead_letters import KEPT_HEADER_BYTES, KEPT_KEY_BYTES, KEPT_VALUE_BYTES, TRUNCATED_HEADER, cut_short
from imgpipe_ops import dlq


def test_a_cut_copy_keeps_the_start_the_context_and_says_what_was_cut():
    own = [("trace", b"t" * (KEPT_HEADER_BYTES + 1))]
    context = [("dlq.stage", b"assembler")]
    key, value, headers = cut_short(b"k" * 5000, b"v" * 2_000_000, own + context)
    assert (len(key), len(value)) == (KEPT_KEY_BYTES, KEPT_VALUE_BYTES)
    names = [name for name, _ in headers]
    assert names == ["dlq.stage", TRUNCATED_HEADER]  # its own headers were too large to keep
    assert b"value of 2000000 bytes cut to 65536" in dict(headers)[TRUNCATED_HEADER]


def test_a_cut_dead_letter_is_refused_by_replay():
    letter = dlq.DeadLetter("imgpipe.rows.processed.dlq", 0, 7, b"k", b"v", [(TRUNCATED_HEADER, b"cut")])
    assert letter.truncated and "TRUNCATED" in dlq.summary_line(letter)
    with pytest.raises(dlq.ReplayFailed, match="cut short"):
        dlq.replay("127.0.0.1:1", [letter], timeout_s=1)
