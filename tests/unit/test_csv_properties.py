"""Property-based tests of the CSV reader."""

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from imgpipe_ingest.csv_input import CsvRejected
from tests.support.csv_parsing import parse_csv

names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\ufeff"), min_size=1
).filter(lambda text: text.strip() == text and text)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}\.(com|test|example)", fullmatch=True)
paths = st.from_regex(r"/[A-Za-z0-9_./-]{0,30}", fullmatch=True)
urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}{path}", st.sampled_from(["http", "https"]), hosts, paths
)
rows = st.lists(st.tuples(names, st.lists(urls, min_size=1, max_size=5)), min_size=1, max_size=20)


def write(table, header, newline: str, bom: bool, spaced: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header)
    for serial, (name, row_urls) in enumerate(table, start=1):
        writer.writerow([serial, name, (", " if spaced else ",").join(row_urls)])
    return (("\ufeff" if bom else "") + out.getvalue()).encode()


@given(
    table=rows,
    header=st.sampled_from(
        [["S. No.", "Product Name", "Input Image Urls"], ["serial number", " PRODUCT NAME ", "input image urls"]]
    ),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    spaced=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_every_valid_table_reads_back_exactly(table, header, newline, bom, spaced):
    upload = parse_csv(write(table, header, newline, bom, spaced))
    assert [(row.serial, row.product_name, row.image_urls) for row in upload.rows] == [
        (serial, name, row_urls) for serial, (name, row_urls) in enumerate(table, start=1)
    ]
    assert [row.index for row in upload.rows] == list(range(len(table)))


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_any_bytes_are_read_or_rejected_with_reasons(data):
    try:
        parse_csv(data)
    except CsvRejected as rejected:
        assert rejected.problems and all(problem.message for problem in rejected.problems)


@given(st.text(max_size=500))
@settings(max_examples=300, deadline=None)
def test_any_text_after_a_valid_header_is_read_or_rejected_with_reasons(body):
    try:
        parse_csv(("S. No.,Product Name,Input Image Urls\n" + body).encode())
    except CsvRejected as rejected:
        assert rejected.problems


cells = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff\x00"), max_size=12)


@st.composite
def tables_with_extra_columns(draw):
    """(extra column names, rows, each row's extra cells, the row given a surplus field or -1)."""
    required = {"s. no.", "serial number", "product name", "input image urls"}
    extra_columns = draw(st.lists(names.filter(lambda name: name.lower() not in required), max_size=3))
    table = draw(rows)
    width = len(extra_columns)
    extra = [draw(st.lists(cells, min_size=width, max_size=width)) for _ in table]
    return extra_columns, table, extra, draw(st.integers(min_value=-1, max_value=len(table) - 1))


@given(tables_with_extra_columns())
@settings(max_examples=200, deadline=None)
def test_no_cell_is_ever_shifted_dropped_or_invented(generated):
    """Extra columns come back as written; a row with more fields than the header is refused, never read
    with its cells moved (pandas' reader takes such a first row's first field as an index)."""
    extra_columns, table, extra, surplus_row = generated
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # so that a cell's lone \r is quoted too
    writer.writerow(["S. No.", "Product Name", "Input Image Urls", *extra_columns])
    written = []
    for index, ((name, row_urls), extra_cells) in enumerate(zip(table, extra, strict=True)):
        record = [str(index + 1), name, ",".join(row_urls), *extra_cells]
        writer.writerow([*record, "surplus"] if index == surplus_row else record)
        written.append(record)
    try:
        upload = parse_csv(out.getvalue().encode())
    except CsvRejected as rejected:
        assert surplus_row >= 0
        assert [(p.row, p.message) for p in rejected.problems] == [
            (surplus_row + 1, f"{len(written[0]) + 1} fields, but the header names {len(written[0])} columns")
        ]
        return
    assert surplus_row == -1
    width = len(written[0])  # stored without trailing empty cells, as the output pads them back
    assert [row.cells + [""] * (width - len(row.cells)) for row in upload.rows] == written


@given(
    serial=st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str), st.from_regex(r"[0-9]{1,400}", fullmatch=True)
    )
)
@settings(max_examples=300, deadline=None)
def test_any_serial_is_a_row_within_64_bits_or_a_problem(serial):
    data = f"S. No.,Product Name,Input Image Urls\n{serial},A,http://a.test/1.jpg\n".encode()
    try:
        rows = parse_csv(data).rows
    except CsvRejected as rejected:
        assert "serial" in rejected.problems[0].message
    else:
        assert 1 <= rows[0].serial <= 2**63 - 1
