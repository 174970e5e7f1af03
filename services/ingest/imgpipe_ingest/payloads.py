"""The payload of each successful answer, as typed models: the routes build their payloads with them, so that
what the OpenAPI document declares is what is sent."""

from pydantic import BaseModel, ConfigDict, Field

from imgpipe_ingest.envelope import Envelope
from imgpipe_schemas import Progress, RequestStatus


class Payload(BaseModel):
    """Every field is always sent: the document says so, defaults or not."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class UploadPayload(Payload):
    request_id: str = Field(description="A UUID: the request's id in the status API and the status page")


class WebhookAttempt(Payload):
    at: str = Field(description="ISO 8601 time of the attempt")
    outcome: int | str = Field(description="The subscriber's HTTP status, or why no answer came (e.g. timeout)")


class WebhookDelivery(Payload):
    webhook_id: str = Field(description="The webhook-id header, the same on every attempt")
    url: str
    state: str = Field(description="pending, retrying, delivered, gone (410) or failed (retries exhausted)")
    attempts: list[WebhookAttempt]


class StatusPayload(Payload):
    request_id: str
    status: RequestStatus
    output_file_url: str | None = Field(description="The output CSV, once the request finished")
    progress: Progress
    rows_accepted: int = Field(
        description="Rows of the upload stored and sent to the workers so far: an upload is answered once its "
        "file is stored, and its rows follow in the background (rows_total for a request produced to Kafka)"
    )
    webhooks: list[WebhookDelivery] = Field(description="Completion webhooks sent, oldest first")


class ImageOutcome(Payload):
    source_url: str
    output_url: str | None = Field(description="The compressed image; null when it failed")
    error_code: str | None
    error_message: str | None
    retryable: bool = Field(False, description="The error was transient and retries ran out")
    bytes_in: int = 0
    bytes_out: int = 0
    kept_source: bool = Field(False, description="Re-encoding would not have made it smaller: the output is the source")
    width: int | None = Field(None, description="The output's width in pixels")
    height: int | None = Field(None, description="The output's height in pixels")
    quality: int | None = Field(None, description="The encoder quality used; null for a source kept as it is")
    score: float | None = Field(
        None, description="The perceptual score (SSIM on luma) at that quality, when a quality mode chose it"
    )
    checks: list[str] | None = Field(
        None,
        description="With a preset: why its marketplace would reject this output, one reason per broken rule "
        "(empty when none is); null without a preset",
    )


class RowOutcome(Payload):
    row_index: int = Field(description="Position in the input CSV, from 0")
    serial: int
    product_name: str
    done: bool = Field(description="Every image of the row has an outcome")
    images: list[ImageOutcome] = Field(
        default_factory=list, description="In the row's input URL order; empty until the row is done"
    )


class RowsPayload(Payload):
    request_id: str
    input_file_url: str | None = Field(
        description="The uploaded CSV (with the uploader's API key); null for a request produced straight to Kafka"
    )
    total: int | None = Field(description="How many rows the request has; null with failed=true (not counted)")
    offset: int
    limit: int
    more: bool = Field(description="Another page follows")
    rows: list[RowOutcome]


class HealthPayload(Payload):
    kafka: bool
    mongodb: bool


class Uploaded(Envelope[UploadPayload]):
    """The upload was accepted (or repeats an earlier one under the same Idempotency-Key)."""


class StatusAnswer(Envelope[StatusPayload]):
    """A request's status."""


class RowsAnswer(Envelope[RowsPayload]):
    """A page of a request's rows."""


class Health(Envelope[HealthPayload]):
    """Whether the broker and the database answer."""


class Received(Envelope[None]):
    """The webhook's signature was verified."""
