"""The notifier's Prometheus metrics (served on its health port, see imgpipe_bus.health)."""

from prometheus_client import Counter, Histogram

WEBHOOK_ATTEMPTS = Counter(
    "imgpipe_webhook_attempts",
    "Webhook POSTs, by what became of the delivery (delivered, retrying, gone, failed) and the answer's class.",
    ["outcome", "answer"],
)
WEBHOOK_SECONDS = Histogram(
    "imgpipe_webhook_seconds",
    "One webhook POST, until the subscriber's answer or the attempt's failure.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
NO_ANSWER = ("timeout", "blocked_address", "invalid_url", "dns_error")


def answer_class(outcome: int | str) -> str:
    """A bounded label for an attempt's outcome: ``2xx`` … ``5xx`` for an HTTP answer, else why there was
    none (``timeout``, ``blocked_address``, ``invalid_url``, ``dns_error``, or ``connection_error``)."""
    if isinstance(outcome, int):
        return f"{outcome // 100}xx" if 100 <= outcome < 600 else "other"
    kind = outcome.split(":", 1)[0]
    return kind if kind in NO_ANSWER else "connection_error"


def attempted(outcome: int | str, state: str, seconds: float) -> None:
    WEBHOOK_ATTEMPTS.labels(state, answer_class(outcome)).inc()
    WEBHOOK_SECONDS.observe(seconds)
