import csv
import io

from imgpipe_assembler.output_csv import build_output_csv
from imgpipe_schemas import ImageResult


def test_keeps_input_columns_and_order_and_aligns_output_urls_with_input_urls():
    ok = ImageResult(source_url="http://in/1.jpg", output_url="http://out/0-0.jpg", bytes_in=10, bytes_out=5)
    failed = ImageResult(source_url="http://in/2.jpg", error_code="http_404", error_message="not found")
    ok3 = ImageResult(
        source_url="http://in/3.jpg", output_url="http://out/0-2.jpg", kept_source=True, width=3, height=2, bytes_out=7
    )
    rows = [
        (["1", "Shirt", "http://in/1.jpg,http://in/2.jpg,http://in/3.jpg", "blue"], [ok, failed, ok3]),
        (
            ["2", "Hat, red", "http://in/4.jpg", ""],
            [ImageResult(source_url="http://in/4.jpg", output_url="http://out/1-0.jpg")],
        ),
    ]
    text = build_output_csv(["S. No.", "Product Name", "Input Image Urls", "Colour"], rows).decode()
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == [
        "S. No.",
        "Product Name",
        "Input Image Urls",
        "Colour",
        "Output Image Urls",
        "Image Errors",
        "Image Details",
        "Image Checks",
    ]
    assert parsed[1] == [
        "1",
        "Shirt",
        "http://in/1.jpg,http://in/2.jpg,http://in/3.jpg",
        "blue",
        "http://out/0-0.jpg,,http://out/0-2.jpg",
        "image 2 (http://in/2.jpg): http_404: not found",
        "quality=;score=;;5,,quality=;score=;3x2;7",
        "",
    ]
    assert parsed[2] == ["2", "Hat, red", "http://in/4.jpg", "", "http://out/1-0.jpg", "", "quality=;score=;;0", ""]


def test_a_row_stored_unpadded_is_padded_to_the_header_in_the_output():
    rows = [
        (
            ["1", "Shirt", "http://in/1.jpg"],
            [ImageResult(source_url="http://in/1.jpg", output_url="http://out/0-0.jpg")],
        )
    ]
    text = build_output_csv(["S. No.", "Product Name", "Input Image Urls", "Colour", "Size"], rows).decode()
    assert list(csv.reader(io.StringIO(text)))[1] == [
        "1",
        "Shirt",
        "http://in/1.jpg",
        "",
        "",
        "http://out/0-0.jpg",
        "",
        "quality=;score=;;0",
        "",
    ]


def test_image_details_give_each_outputs_quality_score_size_and_bytes_in_url_order():
    chosen = ImageResult(
        source_url="http://in/1.jpg",
        output_url="http://out/0-0.jpg",
        bytes_out=48213,
        width=1200,
        height=800,
        quality=62,
        score=0.991234,
    )
    fixed = chosen.model_copy(update={"quality": 50, "score": None, "bytes_out": 51000})
    failed = ImageResult(source_url="http://in/2.jpg", error_code="timeout", error_message="slow")
    text = build_output_csv(
        ["S. No.", "Product Name", "Input Image Urls"], [(["1", "A", "x"], [chosen, failed, fixed])]
    )
    row = list(csv.DictReader(io.StringIO(text.decode())))[0]
    assert row["Image Details"] == "quality=62;score=0.9912;1200x800;48213,,quality=50;score=;1200x800;51000"


def test_image_checks_name_each_image_a_marketplace_would_reject_and_why():
    main = ImageResult(
        source_url="http://in/1.jpg",
        output_url="http://out/0-0.jpg",
        checks=["640×480 is below 1000 px on its longest side", "background is not pure white (measured 200,200,200)"],
    )
    fine = ImageResult(source_url="http://in/2.jpg", output_url="http://out/0-1.jpg", checks=[])
    small = fine.model_copy(update={"checks": ["640×480 is below 1000 px on its longest side"]})
    failed = ImageResult(source_url="http://in/4.jpg", error_code="http_404", error_message="not found")
    text = build_output_csv(
        ["S. No.", "Product Name", "Input Image Urls"],
        [(["1", "A", "x"], [main, fine, small, failed]), (["2", "B", "y"], [fine])],
    )
    header, first, second = list(csv.reader(io.StringIO(text.decode())))
    assert header[-2:] == ["Image Details", "Image Checks"]
    assert first[-1] == (
        "image 1: 640×480 is below 1000 px on its longest side; "
        "image 1: background is not pure white (measured 200,200,200); "
        "image 3: 640×480 is below 1000 px on its longest side"
    )
    assert second[-1] == ""
