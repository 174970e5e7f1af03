import pytest

from imgpipe_ingest.csv_input import CsvRejected, Limits
from tests.support.csv_parsing import parse_csv

HEADER = "S. No.,Product Name,Input Image Urls\n"


def test_reads_rows_in_order_with_every_url_of_a_quoted_cell():
    data = (
        HEADER + '1,SKU1,"https://a.example/1.jpg,https://a.example/2.jpg"\n2,SKU2,https://b.example/x.png\n'
    ).encode()
    upload = parse_csv(data)
    assert upload.columns == ["S. No.", "Product Name", "Input Image Urls"]
    assert [(r.index, r.serial, r.product_name, r.image_urls) for r in upload.rows] == [
        (0, 1, "SKU1", ["https://a.example/1.jpg", "https://a.example/2.jpg"]),
        (1, 2, "SKU2", ["https://b.example/x.png"]),
    ]
    assert upload.images_total == 3


def test_accepts_serial_number_header_bom_crlf_spaces_and_blank_lines():
    data = (
        "\ufeff Serial Number ,product name,INPUT IMAGE URLS,Notes\r\n\r\n"
        '1,P," https://a.example/1.jpg , https://a.example/2.jpg ",keep me\r\n'
    ).encode()
    upload = parse_csv(data)
    assert upload.rows[0].image_urls == ["https://a.example/1.jpg", "https://a.example/2.jpg"]
    assert upload.rows[0].cells[-1] == "keep me"
    assert upload.columns[-1] == "Notes"


def test_lists_every_problem_not_just_the_first():
    data = (HEADER + "x,,ftp://a/1.jpg\n2,P,https://ok.example/a.jpg\n2,Q,\n").encode()
    with pytest.raises(CsvRejected) as rejected:
        parse_csv(data)
    problems = [(p.row, p.column, p.message) for p in rejected.value.problems]
    assert (1, "S. No.", "serial 'x' is not a positive whole number") in problems
    assert (1, "Product Name", "product name is empty") in problems
    assert any(row == 1 and "not an http(s) URL" in message for row, _, message in problems)
    assert (3, "S. No.", "serial 2 repeats row 2") in problems
    assert (3, "Input Image Urls", "no image URL given") in problems
    assert len(problems) == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "the file is binary, not a CSV text file"),
        (
            "S. No.,Product Name,Input Image Urls\n1,caf\xe9,http://a/b.jpg\n".encode("latin-1"),
            "the file is not UTF-8 text",
        ),
        (HEADER.encode(), "the file has a header but no data rows"),
        (b"a,b,c\n1,2,3\n", "required column 'S. No.' is missing from the header"),
    ],
)
def test_rejects_unreadable_files_with_a_clear_reason(data, message):
    with pytest.raises(CsvRejected) as rejected:
        parse_csv(data)
    assert rejected.value.problems[0].message.startswith(message)


def test_limits_rows_and_urls_per_row():
    data = (HEADER + '1,P,"http://a/1,http://a/2,http://a/3"\n2,Q,http://a/4\n').encode()
    with pytest.raises(CsvRejected) as rejected:
        parse_csv(data, Limits(max_rows=1))
    assert "at most 1 are accepted" in rejected.value.problems[0].message
    with pytest.raises(CsvRejected) as rejected:
        parse_csv(data, Limits(max_urls_per_row=2))
    assert rejected.value.problems[0].message == "3 URLs; at most 2 per row"


@pytest.mark.parametrize("serial", ["²", "١", "1.0", "-3", "0", "+4", " "])
def test_serials_must_be_plain_positive_whole_numbers(serial):
    with pytest.raises(CsvRejected) as rejected:
        parse_csv((HEADER + f"{serial},P,http://a.example/x.jpg\n").encode())
    assert "is not a positive whole number" in rejected.value.problems[0].message


def url_of_length(length: int) -> str:
    prefix = "https://images.example/"
    return prefix + "a" * (length - len(prefix))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (url_of_length(2048), None),
        ("HTTP://Images.Example/x.jpg", None),
        ("https://[2606:4700::1111]:8443/x.png", None),
        (url_of_length(2049), "URL longer than 2048 characters"),
        ("ftp://images.example/x.jpg", "not an http(s) URL"),
        ("images.example/x.jpg", "not an http(s) URL"),
        ("https:///x.jpg", "URL has no host"),
        ("https://images.example:99999/x.jpg", "malformed URL"),
        ("https://images.example/a b.jpg", "URL contains whitespace"),
        ("https://images..example/x.jpg", "is not a valid name"),
        ("https://" + "a" * 64 + ".example/x.jpg", "is not a valid name"),
        ("https://bücher.example/x.jpg", None),
    ],
)
def test_each_url_must_be_an_absolute_http_url_of_at_most_2048_characters(url, problem):
    data = (HEADER + f'1,P,"{url}"\n').encode()
    if problem is None:
        assert parse_csv(data).rows[0].image_urls == [url]
        return
    with pytest.raises(CsvRejected) as rejected:
        parse_csv(data)
    assert [(p.row, p.column) for p in rejected.value.problems] == [(1, "Input Image Urls")]
    assert problem in rejected.value.problems[0].message


def test_a_row_with_more_fields_than_the_header_is_refused_not_shifted():
    with pytest.raises(CsvRejected) as rejected:
        parse_csv((HEADER + "5,1,Hat,http://a.example/x.jpg\n").encode())
    assert [(p.row, p.message) for p in rejected.value.problems] == [(1, "4 fields, but the header names 3 columns")]


def test_trailing_empty_fields_and_rows_of_empty_fields_are_ignored():
    upload = parse_csv((HEADER + "1,Hat,http://a.example/x.jpg,,\n,,\n2,Cap,http://a.example/y.jpg\n").encode())
    assert [row.cells for row in upload.rows] == [
        ["1", "Hat", "http://a.example/x.jpg"],
        ["2", "Cap", "http://a.example/y.jpg"],
    ]


def test_a_row_is_stored_without_padding_to_the_header():
    data = "S. No.,Product Name,Input Image Urls,Notes,More\n1,Hat,http://a.example/x.jpg\n2,Cap,http://a.example/y.jpg,n,,\n"
    assert [row.cells for row in parse_csv(data.encode()).rows] == [
        ["1", "Hat", "http://a.example/x.jpg"],
        ["2", "Cap", "http://a.example/y.jpg", "n"],
    ]


def test_a_short_row_still_has_the_required_columns():
    data = b"Notes,S. No.,Input Image Urls,Product Name\nn,1,http://a.example/x.jpg\n"
    rejected = problems_of(data.decode())
    assert [p.message for p in rejected.problems] == ["product name is empty"]


def test_a_wide_header_is_refused_before_any_row_is_read():
    wide = "S. No.,Product Name,Input Image Urls," + ",".join(f"c{n}" for n in range(20_000)) + "\n"
    rejected = problems_of(wide + "1,A,http://a.test/1.jpg\n")
    assert [p.message for p in rejected.problems] == ["the header has 20003 columns; at most 500"]
    long_names = "S. No.,Product Name,Input Image Urls," + ",".join("n" * 100_000 for _ in range(2)) + "\n"
    rejected = problems_of(long_names + "1,A,http://a.test/1.jpg\n")
    assert [p.message for p in rejected.problems] == ["the header has 200034 characters; at most 65536"]


HEADER_LINE = "S. No.,Product Name,Input Image Urls\n"


def problems_of(text: str) -> CsvRejected:
    with pytest.raises(CsvRejected) as rejected:
        parse_csv(text.encode())
    return rejected.value


@pytest.mark.parametrize(
    ("serial", "reason"),
    [
        (str(2**63), "is larger than 9223372036854775807"),
        ("9" * 5000, "is larger than 9223372036854775807"),
        ("0" * 30, "is not a positive whole number"),
    ],
)
def test_a_serial_beyond_64_bits_is_a_problem_not_a_crash(serial, reason):
    rejected = problems_of(HEADER_LINE + f"{serial},A,http://a.test/1.jpg\n")
    assert reason in rejected.problems[0].message and len(rejected.problems[0].message) < 200


def test_the_largest_64_bit_serial_is_accepted():
    assert parse_csv((HEADER_LINE + f"{2**63 - 1},A,http://a.test/1.jpg\n").encode()).rows[0].serial == 2**63 - 1


def test_an_oversized_product_name_or_row_is_a_problem():
    assert (
        "product name has 1001 characters"
        in problems_of(HEADER_LINE + f"1,{'n' * 1001},http://a.test/1.jpg\n").problems[0].message
    )
    notes = ",".join("x" * 100_000 for _ in range(3))  # each cell below the csv module's field limit
    wide = "S. No.,Product Name,Input Image Urls,N1,N2,N3\n" + f"1,A,http://a.test/1.jpg,{notes}\n"
    assert "at most 262144 per row" in problems_of(wide).problems[0].message


def test_the_problem_list_is_capped_and_counted():
    rejected = problems_of(HEADER_LINE + "".join(f"{n},A,ftp://a.test/{n}.jpg\n" for n in range(1, 1001)))
    assert (len(rejected.problems), rejected.total) == (100, 1000)


def test_the_urls_of_a_row_past_its_limit_are_not_checked_one_by_one():
    urls = ",".join(f"ftp://a.test/{n}.jpg" for n in range(25))
    rejected = problems_of(HEADER_LINE + f'1,A,"{urls}"\n')
    assert [p.message for p in rejected.problems] == ["25 URLs; at most 20 per row"]


def test_an_optional_apparel_column_says_which_rows_are_apparel_and_is_kept_as_a_cell():
    data = (
        b"S. No.,Product Name,Input Image Urls, apparel \n"
        b"1,Shirt,https://a.example/1.jpg,Yes\n2,Mug,https://a.example/2.jpg,\n3,Hat,https://a.example/3.jpg\n"
        b"4,Coat,https://a.example/4.jpg,TRUE\n5,Cup,https://a.example/5.jpg,0\n"
    )
    upload = parse_csv(data)
    assert [row.apparel for row in upload.rows] == [True, False, False, True, False]
    assert upload.rows[0].cells[-1] == "Yes"
    assert not any(row.apparel for row in parse_csv((HEADER + "1,P,https://a.example/1.jpg\n").encode()).rows)


def test_an_apparel_cell_that_is_neither_yes_nor_no_is_a_problem_of_its_row():
    data = b"S. No.,Product Name,Input Image Urls,Apparel\n1,Shirt,https://a.example/1.jpg,maybe\n"
    with pytest.raises(CsvRejected) as rejected:
        parse_csv(data)
    assert [(p.row, p.column, p.message) for p in rejected.value.problems] == [
        (1, "Apparel", "apparel 'maybe' is not one of yes, no, true, false, 1, 0")
    ]
