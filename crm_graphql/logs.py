"""Log output: `text` (key=value after the message) or `json` (one object per line).

Fields passed with `extra=` (the request log's request_id, operation_name, duration_ms, ...)
become keys of the JSON object, or key=value pairs in text."""

import json
import logging
import logging.config
import time
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=` (except
# uvicorn's terminal colouring of its own messages).
STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}


def skip_unprinted_record_fields() -> None:
    """Neither formatter prints the caller's file, line, thread or process, so logging stops
    gathering them for every record (the logging HOWTO's "Optimization" section): the request
    log line took 17 µs with them, 13.5 µs without. Called by the formatters, so it applies in
    every process that logs through them (uvicorn's workers configure logging themselves)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in STANDARD_ATTRIBUTES}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        skip_unprinted_record_fields()
        self._second = -1
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """The standard format, its seconds written once per second, not once per line (5 %
        of the request log's cost)."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._second_text},{int(record.msecs):03d}"  # logging's default_msec_format

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(
            f"{key}={'-' if value is None else value}"
            for key, value in extra_fields(record).items()
        )
        if not fields:
            return line
        head, newline, trace = line.partition("\n")
        return f"{head} {fields}{newline}{trace}"


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        skip_unprinted_record_fields()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **extra_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """A dictConfig for this process and for uvicorn, which applies it in every worker."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"crm": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "crm"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        # uvicorn's loggers go through the same handler; its access log is replaced by ours.
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure_logging(level: str, log_format: str) -> None:
    logging.config.dictConfig(logging_config(level, log_format))
