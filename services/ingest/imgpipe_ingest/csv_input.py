"""Reading and validating an uploaded products CSV, a record at a time: memory stays the same whatever
the file's size. Pure: a binary file in, rows or every problem out.

The standard csv module reads the records: it gives each record exactly as written, where pandas' reader
takes a first row with one field too many as an index column (shifting every cell) or truncates it."""

import codecs
import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from imgpipe_runtime import netpolicy
from imgpipe_schemas.events import MAX_IMAGES_PER_ROW, MAX_PRODUCT_CHARS, MAX_URL_CHARS

SERIAL_NAMES = ("s. no.", "serial number")
PRODUCT = "product name"
URLS = "input image urls"
# Optional: whether the row's product is apparel, which some marketplace presets' rules ask more of.
APPAREL = "apparel"
YES = ("yes", "true", "1")
NO = ("", "no", "false", "0")
MAX_URL_LENGTH = MAX_URL_CHARS
MAX_SERIAL = 2**63 - 1  # a 64-bit signed integer, as MongoDB and every Kafka client store it
# A row's cells in all: far below MongoDB's 16 MB document limit whatever the other columns hold.
MAX_ROW_CHARS = 256 * 1024
# The header's width bounds every row's (the output repeats a row's cells padded to it): a narrow file
# with a wide header must not become a huge output.
MAX_COLUMNS = 500
MAX_HEADER_CHARS = 64 * 1024
# A rejected file's answer lists this many problems and counts the rest.
MAX_PROBLEMS_LISTED = 100
CHUNK_BYTES = 1 << 20
ROWS_PER_BATCH = 1000


@dataclass(frozen=True)
class Problem:
    row: int | None
    column: str | None
    message: str


@dataclass(frozen=True)
class InputRow:
    index: int
    serial: int
    product_name: str
    image_urls: list[str]
    cells: list[str]
    apparel: bool = False


@dataclass(frozen=True)
class CsvSummary:
    columns: list[str]
    rows_total: int
    images_total: int


class CsvRejected(ValueError):
    """``problems``: the first MAX_PROBLEMS_LISTED of them; ``total``: how many there were."""

    def __init__(self, problems: list[Problem], total: int | None = None) -> None:
        self.total = len(problems) if total is None else total
        super().__init__(f"{self.total} problem(s) in the CSV")
        self.problems = problems[:MAX_PROBLEMS_LISTED]


class _Problems(list):
    """Keeps the first MAX_PROBLEMS_LISTED problems and counts all of them: a file with a problem in
    every row must not make an answer larger than itself."""

    total = 0

    def append(self, problem: Problem) -> None:
        self.total += 1
        if len(self) < MAX_PROBLEMS_LISTED:
            super().append(problem)

    def clear(self) -> None:
        self.total = 0
        super().clear()


@dataclass(frozen=True)
class Limits:
    max_rows: int = 10_000
    max_urls_per_row: int = MAX_IMAGES_PER_ROW


def check_text(source: BinaryIO) -> str:
    """Rejects an empty, binary or non-UTF-8 file; returns the file's SHA-256 (hex)."""
    source.seek(0)
    digest, decoder = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")()
    offset, blank = 0, True
    while chunk := source.read(CHUNK_BYTES):
        digest.update(chunk)
        if b"\x00" in chunk:
            raise CsvRejected([Problem(None, None, "the file is binary, not a CSV text file")])
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise CsvRejected([Problem(None, None, f"the file is not UTF-8 text (byte {offset + exc.start})")]) from exc
        blank = blank and not chunk.strip()
        offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise CsvRejected([Problem(None, None, f"the file is not UTF-8 text (byte {offset + exc.start})")]) from exc
    if blank:
        raise CsvRejected([Problem(None, None, "the file is empty")])
    return digest.hexdigest()


def validate_csv(source: BinaryIO, limits: Limits = Limits()) -> CsvSummary:
    """Checks every row of a file that passed check_text; CsvRejected lists every problem found.
    ``row`` in a problem counts data rows from 1."""
    columns = _header(source)
    problems = _Problems()
    rows_total = images_total = 0
    for row in _rows(source, columns, limits, problems):
        rows_total += 1
        if rows_total > limits.max_rows:
            problems.clear()  # only counting from here on
        elif row is not None:
            images_total += len(row.image_urls)
    if rows_total > limits.max_rows:
        raise CsvRejected(
            [Problem(None, None, f"the file has {rows_total} rows; at most {limits.max_rows} are accepted")]
        )
    if rows_total == 0:
        raise CsvRejected([Problem(None, None, "the file has a header but no data rows")])
    if problems:
        raise CsvRejected(list(problems), problems.total)
    return CsvSummary(columns, rows_total, images_total)


def read_rows(source: BinaryIO, limits: Limits = Limits(), batch: int = ROWS_PER_BATCH) -> Iterator[list[InputRow]]:
    """The rows of a validated file in input order, ``batch`` at a time."""
    rows: list[InputRow] = []
    for row in _rows(source, _header(source), limits, []):
        if row is not None:
            rows.append(row)
        if len(rows) == batch:
            yield rows
            rows = []
    if rows:
        yield rows


def _header(source: BinaryIO) -> list[str]:
    for record in _records(source):
        if len(record) > MAX_COLUMNS:
            raise CsvRejected([Problem(None, None, f"the header has {len(record)} columns; at most {MAX_COLUMNS}")])
        if (size := sum(len(name) for name in record)) > MAX_HEADER_CHARS:
            raise CsvRejected([Problem(None, None, f"the header has {size} characters; at most {MAX_HEADER_CHARS}")])
        _locate_columns(record)
        return record
    raise CsvRejected([Problem(None, None, "the file is empty")])


def _records(source: BinaryIO) -> Iterator[list[str]]:
    """The file's records from its start, blank ones (no field with text) skipped."""
    source.seek(0)
    text = io.TextIOWrapper(source, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    try:
        for record in reader:
            if any(field.strip() for field in record):
                yield record
    except csv.Error as exc:
        raise CsvRejected(
            [Problem(None, None, f"the file is not a readable CSV: line {reader.line_num}: {exc}")]
        ) from exc
    finally:
        text.detach()  # the caller's file stays open


def _rows(source: BinaryIO, columns: list[str], limits: Limits, problems: list[Problem]) -> Iterator[InputRow | None]:
    """Each data row, checked: the row, or None with its problems appended."""
    serial_col, product_col, urls_col = _locate_columns(columns)
    apparel_col = _apparel_column(columns)
    needed = max(serial_col, product_col, urls_col) + 1
    seen_serials: dict[int, int] = {}
    records = _records(source)
    next(records)  # the header
    for index, cells in enumerate(records):
        number = index + 1
        if len(cells) > len(columns):
            if any(cell.strip() for cell in cells[len(columns) :]):
                problems.append(
                    Problem(number, None, f"{len(cells)} fields, but the header names {len(columns)} columns")
                )
                yield None
                continue
            cells = cells[: len(columns)]  # trailing empty fields, as spreadsheets export them
        cells = _unpadded(cells, needed)
        if (size := sum(len(cell) for cell in cells)) > MAX_ROW_CHARS:
            problems.append(Problem(number, None, f"the row has {size} characters; at most {MAX_ROW_CHARS} per row"))
            yield None
            continue
        serial = _serial(cells[serial_col], columns[serial_col], number, problems)
        if serial is not None:
            if serial in seen_serials:
                problems.append(
                    Problem(number, columns[serial_col], f"serial {serial} repeats row {seen_serials[serial]}")
                )
            seen_serials.setdefault(serial, number)
        product = cells[product_col].strip()
        if not product:
            problems.append(Problem(number, columns[product_col], "product name is empty"))
        elif len(product) > MAX_PRODUCT_CHARS:
            problems.append(
                Problem(
                    number,
                    columns[product_col],
                    f"product name has {len(product)} characters; at most {MAX_PRODUCT_CHARS}",
                )
            )
            product = ""
        urls = _urls(cells[urls_col], columns[urls_col], number, limits, problems)
        apparel = _apparel(cells, apparel_col, columns, number, problems)
        valid = serial is not None and product and urls and apparel is not None
        yield InputRow(index, cast(int, serial), product, urls, cells, bool(apparel)) if valid else None


def _apparel_column(columns: list[str]) -> int | None:
    """The optional Apparel column's position; None without one. Named twice, it is ambiguous."""
    matches = [i for i, name in enumerate(columns) if name.strip().lower() == APPAREL]
    if len(matches) > 1:
        raise CsvRejected([Problem(None, "Apparel", f"column 'Apparel' appears {len(matches)} times in the header")])
    return matches[0] if matches else None


def _apparel(
    cells: list[str], column: int | None, columns: list[str], number: int, problems: list[Problem]
) -> bool | None:
    """The row's Apparel cell read as yes or no (a short row's missing cell is no); None when it is neither."""
    if column is None:
        return False
    cell = cells[column] if column < len(cells) else ""
    value = cell.strip().lower()
    if value in YES or value in NO:
        return value in YES
    shown = cell if len(cell) <= 40 else f"{cell[:40]}…"
    problems.append(Problem(number, columns[column], f"apparel {shown!r} is not one of yes, no, true, false, 1, 0"))
    return None


def _unpadded(cells: list[str], needed: int) -> list[str]:
    """A row's cells without trailing empty ones, yet at least ``needed`` long: stored as short as it can
    be, and padded to the header's width only where the output CSV is written."""
    end = len(cells)
    while end > needed and not cells[end - 1]:
        end -= 1
    return cells[:end] + [""] * (needed - end)


def _locate_columns(columns: list[str]) -> tuple[int, int, int]:
    normalised = [name.strip().lower() for name in columns]
    problems = []
    found = []
    for wanted, label in ((SERIAL_NAMES, "S. No."), ((PRODUCT,), "Product Name"), ((URLS,), "Input Image Urls")):
        matches = [i for i, name in enumerate(normalised) if name in wanted]
        if not matches:
            problems.append(Problem(None, label, f"required column {label!r} is missing from the header"))
        elif len(matches) > 1:
            problems.append(Problem(None, label, f"column {label!r} appears {len(matches)} times in the header"))
        else:
            found.append(matches[0])
    if problems:
        raise CsvRejected(problems)
    return found[0], found[1], found[2]


def _serial(cell: str, column: str, number: int, problems: list[Problem]) -> int | None:
    text = cell.strip()
    shown = repr(cell) if len(cell) <= 40 else f"{cell[:40]!r}… ({len(cell)} characters)"
    digits = text.lstrip("0")
    if not (text.isascii() and text.isdigit()) or not digits:
        problems.append(Problem(number, column, f"serial {shown} is not a positive whole number"))
        return None
    if len(digits) > len(str(MAX_SERIAL)) or int(digits) > MAX_SERIAL:  # length first: int() of a huge string is slow
        problems.append(Problem(number, column, f"serial {shown} is larger than {MAX_SERIAL}"))
        return None
    return int(digits)


def _urls(cell: str, column: str, number: int, limits: Limits, problems: list[Problem]) -> list[str]:
    urls = [part.strip() for part in cell.split(",") if part.strip()]
    if not urls:
        problems.append(Problem(number, column, "no image URL given"))
        return []
    if len(urls) > limits.max_urls_per_row:
        problems.append(Problem(number, column, f"{len(urls)} URLs; at most {limits.max_urls_per_row} per row"))
        return []  # the URLs of a row past its limit are not checked one by one
    bad = False
    for url in urls:
        reason = submitted_url_problem(url)
        if reason:
            problems.append(Problem(number, column, f"{url[:100]!r}: {reason}"))
            bad = True
    return [] if bad else urls


def submitted_url_problem(url: str) -> str | None:
    """Why ``url`` may not stand in a CSV: the shared URL rules, plus a length cap and no whitespace."""
    if len(url) > MAX_URL_LENGTH:
        return f"URL longer than {MAX_URL_LENGTH} characters"
    if reason := netpolicy.url_problem(url):
        return reason
    if any(ch.isspace() for ch in url):
        return "URL contains whitespace"
    return None
