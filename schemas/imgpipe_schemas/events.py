"""Event contracts, version 1.

Every event is one JSON object on the wire. Field names are the contract: producers in any language
build these from the JSON Schema documents under ``schemas/json/v1/``.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal
from uuid import UUID, uuid4

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue

SCHEMA_VERSION: Final = 1

OutputFormat = Literal["jpeg", "webp", "png", "avif", "keep", "auto"]
# What a request that names none gets, wherever it is built (ingest, the reconciler, the codec, the tools).
DEFAULT_QUALITY = 50
DEFAULT_OUTPUT_FORMAT: OutputFormat = "jpeg"
# The input CSV's columns, in order: what an upload must have, and what a request produced straight to Kafka
# is written out as.
CSV_COLUMNS = ("S. No.", "Product Name", "Input Image Urls")
MAX_ERROR_MESSAGE = 500
# Bounds on what a producer may send, the CSV's own: they keep every event, and the row result it leads
# to, far below a Kafka message's 1 MB limit, so that an oversized event is invalid, never unsendable.
MAX_IMAGES_PER_ROW = 20
MAX_URL_CHARS = 2048
MAX_PRODUCT_CHARS = 1000

SourceUrl = Annotated[str, Field(min_length=1, max_length=MAX_URL_CHARS)]


def _now() -> datetime:
    return datetime.now(UTC)


# Validation context of a message read off a topic.
WIRE = {"wire": True}


class WireModel(BaseModel):
    """Defaults make events easy to build in Python, but on the wire every field is required, exactly as
    the JSON Schema documents say: a message missing one is rejected, not completed with a guess. The
    exceptions are ``wire_optional``: fields added to version 1 after producers were written against it,
    whose absence means their defaults, so that those producers stay valid."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)
    wire_optional: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _complete_on_the_wire(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context == WIRE and isinstance(data, dict):
            missing = [name for name in cls.model_fields if name not in data and name not in cls.wire_optional]
            if missing:
                raise ValueError(f"missing required field(s): {', '.join(missing)}")
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        if cls.wire_optional:
            document = handler.resolve_ref_schema(schema)
            document["required"] = [name for name in document.get("required", []) if name not in cls.wire_optional]
        return schema


Fit = Literal["contain", "pad", "cover"]
Metadata = Literal["strip", "keep_copyright", "keep"]
QualityMode = Literal["auto:eco", "auto:good", "auto:best"]
# The marketplace presets (imgpipe_runtime's presets.toml holds what each sets and its rules).
PresetName = Literal["web", "amazon", "google-shopping"]
MAX_CHECK_CHARS = 300
MAX_SIDE = 20_000


class ImageOptions(BaseModel):
    """How each image of a request is shaped, beyond its quality and format; every field may be left out.

    Geometry never upscales and always keeps the aspect ratio. ``contain`` fits the image inside
    ``max_width`` × ``max_height`` (either may be left out); ``pad`` does the same, then centres it on a
    canvas of exactly that box in ``background``; ``cover`` fills the box and crops what overflows, centred.
    ``pad`` and ``cover`` need both sides."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        # The JSON Schema form of the model validator below, so that a producer's validator agrees with ours.
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"fit": {"enum": ["pad", "cover"]}}, "required": ["fit"]},
                    "then": {
                        "required": ["max_width", "max_height"],
                        "properties": {"max_width": {"type": "integer"}, "max_height": {"type": "integer"}},
                    },
                },
                {
                    "if": {"properties": {"keep_gps": {"const": True}}, "required": ["keep_gps"]},
                    "then": {"required": ["metadata"], "properties": {"metadata": {"const": "keep"}}},
                },
            ]
        },
    )

    max_width: Annotated[int, Field(ge=1, le=MAX_SIDE, description="Widest output, in pixels.")] | None = None
    max_height: Annotated[int, Field(ge=1, le=MAX_SIDE, description="Tallest output, in pixels.")] | None = None
    fit: Fit = Field("contain", description="contain: inside the box; pad: exactly the box; cover: fill and crop.")
    background: Annotated[
        str, Field(pattern=r"^[0-9a-fA-F]{6}$", description="The padding's colour (pad), RRGGBB in hex.")
    ] = "ffffff"
    progressive: bool = Field(True, description="JPEG output progressive (else baseline).")
    metadata: Metadata = Field(
        "strip",
        description="strip: none (the ICC profile is kept); keep_copyright: EXIF Artist and Copyright; "
        "keep: everything but GPS.",
    )
    keep_gps: bool = Field(False, description="With metadata=keep, GPS positions are kept too.")
    quality_mode: QualityMode | None = Field(
        None,
        description="Perceptual quality: per image, the lowest encoder quality whose output still scores the "
        "mode's SSIM target (JPEG, WebP, AVIF); the event's quality is then used only for PNG. "
        "Left out: the event's fixed quality.",
    )
    preset: PresetName | None = Field(
        None,
        description="A marketplace preset: format=auto chooses only among the formats it accepts, and each output "
        "is checked against its rules (the row result's checks). Its geometry and format defaults are applied by "
        "the upload API, which knows what a request set; a producer sets them on the event itself.",
    )

    # Field validators, not one for the model, so that an error names its field; each sees the fields
    # declared before it.
    @field_validator("fit")
    @classmethod
    def _box_for_pad_and_cover(cls, fit: str, info: ValidationInfo) -> str:
        if fit != "contain" and (info.data.get("max_width") is None or info.data.get("max_height") is None):
            raise ValueError(f"fit={fit} needs both max_width and max_height")
        return fit

    @field_validator("keep_gps")
    @classmethod
    def _gps_only_with_keep(cls, keep_gps: bool, info: ValidationInfo) -> bool:
        if keep_gps and info.data.get("metadata") != "keep":
            raise ValueError("keep_gps needs metadata=keep")
        return keep_gps

    @property
    def resizes(self) -> bool:
        return self.max_width is not None or self.max_height is not None


class Event(WireModel):
    event_id: UUID = Field(default_factory=uuid4, description="Unique per event; consumers may use it to de-duplicate.")
    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: UUID
    occurred_at: datetime = Field(default_factory=_now)

    def partition_key(self) -> str:
        """Results of one request land on one partition, in order."""
        return str(self.request_id)


class RequestAccepted(Event):
    """A CSV upload was validated and stored; its rows follow on the rows topic."""

    event_type: Literal["request.accepted"] = "request.accepted"
    rows_total: Annotated[int, Field(ge=1)]
    images_total: Annotated[int, Field(ge=1)]
    webhook_url: Annotated[str, Field(max_length=MAX_URL_CHARS)] | None = None


class RowSubmitted(Event):
    """One CSV row whose images are to be fetched and compressed."""

    event_type: Literal["row.submitted"] = "row.submitted"
    row_index: Annotated[int, Field(ge=0, description="Position of the row in the input CSV, from 0.")]
    serial: Annotated[int, Field(ge=0, le=2**63 - 1, description="A 64-bit signed integer, as MongoDB stores it.")]
    product_name: Annotated[str, Field(max_length=MAX_PRODUCT_CHARS)]
    image_urls: Annotated[list[SourceUrl], Field(min_length=1, max_length=MAX_IMAGES_PER_ROW)]
    quality: Annotated[int, Field(ge=1, le=95)] = DEFAULT_QUALITY
    output_format: OutputFormat = DEFAULT_OUTPUT_FORMAT
    image_options: ImageOptions = Field(
        default_factory=ImageOptions, description="Geometry and the like; left out, every option's default."
    )
    apparel: bool = Field(
        False, description="The product is apparel, which some presets' rules ask more of (the CSV's Apparel column)."
    )

    wire_optional = frozenset({"image_options", "apparel"})

    def partition_key(self) -> str:
        """Rows of one request spread over the partitions, so that workers share a big request."""
        return f"{self.request_id}:{self.row_index}"


class ImageResult(WireModel):
    """The outcome for one input image: an output URL, or an error code and message."""

    source_url: SourceUrl
    output_url: Annotated[str, Field(max_length=MAX_URL_CHARS)] | None = None
    error_code: Annotated[str, Field(max_length=100)] | None = None
    error_message: str | None = None
    retryable: bool = Field(False, description="The error was transient and retries ran out: worth replaying later.")
    bytes_in: Annotated[int, Field(ge=0)] = 0
    bytes_out: Annotated[int, Field(ge=0)] = 0
    kept_source: bool = Field(
        False, description="Re-encoding would not have made it smaller: the output is the source."
    )
    width: Annotated[int, Field(ge=1)] | None = Field(None, description="The output's width in pixels.")
    height: Annotated[int, Field(ge=1)] | None = Field(None, description="The output's height in pixels.")
    quality: Annotated[int, Field(ge=1, le=100)] | None = Field(
        None, description="The encoder quality of the output; null for a source kept as it is, or a failure."
    )
    score: Annotated[float, Field(ge=-1, le=1)] | None = Field(
        None, description="The perceptual score (SSIM) at that quality, when a quality mode chose it; else null."
    )
    checks: Annotated[list[Annotated[str, Field(max_length=MAX_CHECK_CHARS)]], Field(max_length=50)] | None = Field(
        None,
        description="With a preset: why its marketplace would reject this output, one reason per broken rule "
        "(empty when none is). Null without a preset, or for a failure.",
    )

    wire_optional = frozenset({"width", "height", "quality", "score", "checks"})

    @field_validator("error_message")
    @classmethod
    def _bounded(cls, message: str | None) -> str | None:
        """A message may quote what a source sent (a redirect's Location): stored and echoed in the
        output CSV once per image, so it is cut short wherever it is read."""
        if message is not None and len(message) > MAX_ERROR_MESSAGE:
            return message[: MAX_ERROR_MESSAGE - 1] + "…"
        return message

    @property
    def ok(self) -> bool:
        return self.output_url is not None


class RowProcessed(Event):
    """Every image of one row has an outcome, in the row's input URL order."""

    event_type: Literal["row.processed"] = "row.processed"
    row_index: Annotated[int, Field(ge=0)]
    images: Annotated[list[ImageResult], Field(min_length=1, max_length=MAX_IMAGES_PER_ROW)]


class Progress(WireModel):
    rows_total: int = 0
    rows_done: int = 0
    images_total: int = 0
    images_ok: int = 0
    images_failed: int = 0


class RequestStatus(StrEnum):
    """A request's status: stored on the request, shown by the status API, and (once finished) carried by
    RequestCompleted. PENDING until its rows are published, PROCESSING until every row is in."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


FINISHED = (RequestStatus.SUCCESS, RequestStatus.FAILED)


class RequestCompleted(Event):
    """Every row of a request is in and its output CSV is stored (``request.completed``), or a replayed row
    changed the output of a finished request (``request.updated``, with a new event id)."""

    event_type: Literal["request.completed", "request.updated"] = "request.completed"
    # FINISHED, spelt as a literal so that the JSON Schema document stays a plain string enum.
    status: Literal["SUCCESS", "FAILED"]
    output_file_url: str | None
    progress: Progress
    webhook_url: Annotated[str, Field(max_length=MAX_URL_CHARS)] | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    model.model_fields["event_type"].default: model
    for model in (RequestAccepted, RowSubmitted, RowProcessed, RequestCompleted)
}
