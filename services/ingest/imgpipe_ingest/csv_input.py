"""Reading and validating an uploaded products CSV. Pure: bytes in, rows or every problem out."""

import csv
import io
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pandas as pd

SERIAL_NAMES = ("s. no.", "serial number")
PRODUCT = "product name"
URLS = "input image urls"
MAX_URL_LENGTH = 2048


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


@dataclass(frozen=True)
class InputCsv:
    columns: list[str]
    rows: list[InputRow] = field(default_factory=list)

    @property
    def images_total(self) -> int:
        return sum(len(row.image_urls) for row in self.rows)


class CsvRejected(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the CSV")
        self.problems = problems


@dataclass(frozen=True)
class Limits:
    max_rows: int = 10_000
    max_urls_per_row: int = 20


def parse_csv(data: bytes, limits: Limits = Limits()) -> InputCsv:
    """Rows in input order, or CsvRejected listing every problem found. ``row`` counts data rows from 1."""
    frame = _read_frame(data)
    columns = [str(name) for name in frame.columns]
    serial_col, product_col, urls_col = _locate_columns(columns)
    if len(frame) == 0:
        raise CsvRejected([Problem(None, None, "the file has a header but no data rows")])
    if len(frame) > limits.max_rows:
        raise CsvRejected([Problem(None, None, f"the file has {len(frame)} rows; at most {limits.max_rows} are accepted")])

    problems: list[Problem] = []
    rows: list[InputRow] = []
    seen_serials: dict[int, int] = {}
    for index, cells in enumerate(frame.itertuples(index=False, name=None)):
        number = index + 1
        cells = [str(cell) for cell in cells]
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
        urls = _urls(cells[urls_col], columns[urls_col], number, limits, problems)
        if serial is not None and product and urls:
            rows.append(InputRow(index, serial, product, urls, cells))
    if problems:
        raise CsvRejected(problems)
    return InputCsv(columns, rows)


def _read_frame(data: bytes) -> pd.DataFrame:
    if not data.strip():
        raise CsvRejected([Problem(None, None, "the file is empty")])
    if b"\x00" in data:
        raise CsvRejected([Problem(None, None, "the file is binary, not a CSV text file")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvRejected([Problem(None, None, f"the file is not UTF-8 text (byte {exc.start})")]) from exc
    try:
        return pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=True,
            quoting=csv.QUOTE_MINIMAL,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise CsvRejected([Problem(None, None, f"the file is not a readable CSV: {exc}")]) from exc


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
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        problems.append(Problem(number, column, f"serial {cell!r} is not a positive whole number"))
        return None
    return int(text)


def _urls(cell: str, column: str, number: int, limits: Limits, problems: list[Problem]) -> list[str]:
    urls = [part.strip() for part in cell.split(",") if part.strip()]
    if not urls:
        problems.append(Problem(number, column, "no image URL given"))
        return []
    if len(urls) > limits.max_urls_per_row:
        problems.append(Problem(number, column, f"{len(urls)} URLs; at most {limits.max_urls_per_row} per row"))
    bad = False
    for url in urls:
        reason = url_problem(url)
        if reason:
            problems.append(Problem(number, column, f"{url[:100]!r}: {reason}"))
            bad = True
    return [] if bad else urls


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute http(s) URL, or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"URL longer than {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        return f"malformed URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "not an http(s) URL"
    if not parts.hostname:
        return "URL has no host"
    if any(ch.isspace() for ch in url):
        return "URL contains whitespace"
    return None
