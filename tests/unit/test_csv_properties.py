"""Property-based tests of the CSV reader."""

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from imgpipe_ingest.csv_input import CsvRejected, parse_csv

names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\ufeff"), min_size=1
).filter(lambda text: text.strip() == text and text)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}\.(com|test|example)", fullmatch=True)
paths = st.from_regex(r"/[A-Za-z0-9_./-]{0,30}", fullmatch=True)
urls = st.builds(lambda scheme, host, path: f"{scheme}://{host}{path}", st.sampled_from(["http", "https"]), hosts, paths)
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
    header=st.sampled_from([["S. No.", "Product Name", "Input Image Urls"], ["serial number", " PRODUCT NAME ", "input image urls"]]),
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
