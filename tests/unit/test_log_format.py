"""The text log line's timestamp: written once per second (logs.TextFormatter.formatTime), it
must read as logging's own format would write it, whatever the second and millisecond."""

import logging

import pytest

from crm_graphql.logs import TextFormatter

STANDARD = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


@pytest.mark.parametrize(
    "created",
    [0.5, 1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.0005, 1_000_000_000.9999],
)
def test_the_timestamp_reads_as_loggings_own(created: float) -> None:
    formatter = TextFormatter()
    for instant in (created, created + 0.25, created + 1.0):  # a second reused, then the next
        record = logging.makeLogRecord({"msg": "request"})
        record.created = instant
        record.msecs = int((instant - int(instant)) * 1000) + 0.0
        assert formatter.formatTime(record) == STANDARD.formatTime(record)
        assert formatter.format(record) == STANDARD.format(record)
