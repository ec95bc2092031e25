"""Log lines: the text format's timestamp, written once per second, and the request log's
lines written straight to the configured handlers (logs.log_fields) must read exactly as
logging's own pipeline writes them, in both formats; any other setup gets the record through
logging."""

import io
import logging
import time
from collections.abc import Iterator

import pytest

from crm_graphql.logs import JsonFormatter, TextFormatter, log_fields

STANDARD = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")

INSTANTS = [0.5, 1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.0005, 1_000_000_000.9999]

REQUEST_FIELDS = [
    {
        "request_id": "3f2a",
        "method": "POST",
        "path": "/graphql",
        "operation_name": None,
        "operation_type": "mutation",
        "status": 200,
        "outcome": "ok",
        "read_path": "general: Mutation.mergeLeads",
        "duration_ms": 3.25,
    },
    {"label": 'quote " and ünïcode', "count": 0, "flag": True, "none": None},
    {},
]


@pytest.mark.parametrize("created", INSTANTS)
def test_the_timestamp_reads_as_loggings_own(created: float) -> None:
    formatter = TextFormatter()
    for instant in (created, created + 0.25, created + 1.0):  # a second reused, then the next
        record = logging.makeLogRecord({"msg": "request"})
        record.created = instant
        record.msecs = int((instant - int(instant)) * 1000) + 0.0
        assert formatter.formatTime(record) == STANDARD.formatTime(record)
        assert formatter.format(record) == STANDARD.format(record)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("crm_graphql.test_log_format")
    logger.propagate = False  # its own handler only, whatever the test run configured
    logger.setLevel(logging.INFO)
    try:
        yield logger
    finally:
        logger.handlers.clear()
        logger.propagate = True


@pytest.mark.parametrize("formatter_class", [TextFormatter, JsonFormatter])
@pytest.mark.parametrize("fields", REQUEST_FIELDS)
@pytest.mark.parametrize("created", INSTANTS)
def test_a_line_written_directly_reads_as_the_one_logging_writes(
    logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    formatter_class: type[TextFormatter | JsonFormatter],
    fields: dict[str, object],
    created: float,
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_class())
    logger.addHandler(handler)
    monkeypatch.setattr(time, "time", lambda: created)

    logger.info("request", extra=fields)
    log_fields(logger, logging.INFO, "request", fields)

    through_logging, direct = stream.getvalue().splitlines(keepends=True)
    assert direct == through_logging


def test_below_the_level_nothing_is_written(logger: logging.Logger) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    log_fields(logger, logging.INFO, "request", {"status": 200})
    assert stream.getvalue() == ""


def test_any_other_handler_gets_a_record_through_logging(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    logger.addHandler(caplog.handler)
    log_fields(logger, logging.INFO, "request", {"status": 200, "outcome": "ok"})
    [record] = caplog.records
    assert (record.getMessage(), record.status, record.outcome) == ("request", 200, "ok")  # type: ignore[attr-defined]


def test_a_record_factory_someone_installed_still_sees_every_line(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tracing library adds its fields to every record through the record factory: the
    request log's line must go through it, not around it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger.addHandler(handler)
    standard_factory = logging.getLogRecordFactory()

    def traced(*args: object, **kwargs: object) -> logging.LogRecord:
        record = standard_factory(*args, **kwargs)  # type: ignore[arg-type]
        record.trace_id = "abc"
        return record

    monkeypatch.setattr(logging, "_logRecordFactory", traced)
    log_fields(logger, logging.INFO, "request", {"status": 200})
    assert stream.getvalue().rstrip("\n").endswith("request trace_id=abc status=200")
