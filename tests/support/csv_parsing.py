"""A whole small CSV read at once, as ingest reads an upload a chunk at a time: for tests."""

import io
from dataclasses import dataclass, field

from imgpipe_ingest.csv_input import InputRow, Limits, check_text, read_rows, validate_csv


@dataclass(frozen=True)
class InputCsv:
    columns: list[str]
    rows: list[InputRow] = field(default_factory=list)

    @property
    def images_total(self) -> int:
        return sum(len(row.image_urls) for row in self.rows)


def parse_csv(data: bytes, limits: Limits = Limits()) -> InputCsv:
    """Rows in input order, or CsvRejected."""
    source = io.BytesIO(data)
    check_text(source)
    summary = validate_csv(source, limits)
    return InputCsv(summary.columns, [row for batch in read_rows(source, limits) for row in batch])
