"""Log output: `text` (key=value after the message) or `json` (one object per line).

Fields passed with `extra=` (the request log's request_id, operation_name, duration_ms, ...)
become keys of the JSON object, or key=value pairs in text."""

import json
import logging
import logging.config
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

# Attributes every LogRecord has; anything else on a record came from `extra=` (except
# uvicorn's terminal colouring of its own messages).
STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}


# A line's fields: name -> value, in the order they are written.
Fields = Mapping[str, Any]


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
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self._stamp(record.created, record.msecs)

    def _stamp(self, created: float, msecs: float) -> str:
        """logging's default time format, its seconds written once per second, not once per
        line (5 % of the request log's cost)."""
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._second_text},{int(msecs):03d}"  # logging's default_msec_format

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        head, newline, trace = line.partition("\n")
        return self._with_fields(head, extra_fields(record)) + newline + trace

    def line(self, created: float, level: int, name: str, message: str, fields: Fields) -> str:
        """What `format` writes for a record of these, without an exception or stack."""
        head = f"{self._stamp(created, _msecs(created))} {logging.getLevelName(level)} {name}"
        return self._with_fields(f"{head} {message}", fields)

    @staticmethod
    def _with_fields(head: str, fields: Fields) -> str:
        if not fields:
            return head
        pairs = " ".join(
            [f"{key}={'-' if value is None else value}" for key, value in fields.items()]
        )
        return f"{head} {pairs}"


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        skip_unprinted_record_fields()

    def format(self, record: logging.LogRecord) -> str:
        entry = self._entry(
            record.created, record.levelname, record.name, record.getMessage(), extra_fields(record)
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)

    def line(self, created: float, level: int, name: str, message: str, fields: Fields) -> str:
        """What `format` writes for a record of these, without an exception."""
        entry = self._entry(created, logging.getLevelName(level), name, message, fields)
        return json.dumps(entry, default=str)

    @staticmethod
    def _entry(
        created: float, level_name: str, name: str, message: str, fields: Fields
    ) -> dict[str, Any]:
        return {
            "time": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
            "level": level_name.lower(),
            "logger": name,
            "message": message,
            **fields,
        }


def _msecs(created: float) -> float:
    return int((created - int(created)) * 1000) + 0.0  # as LogRecord computes it


def _record_pipeline() -> tuple[object, ...]:
    """What a record passes through in logging."""
    return (
        logging.getLogRecordFactory(),
        logging.Logger.makeRecord,
        logging.Logger.handle,
        logging.Logger.callHandlers,
    )


# As this module found it: if anything replaced a piece (a tracing library's record factory
# or logger class adds fields to every record), records go through logging.
_PIPELINE = _record_pipeline()


def _pipeline_untouched(logger: logging.Logger) -> bool:
    return type(logger) is logging.Logger and _record_pipeline() == _PIPELINE


def direct_handlers(logger: logging.Logger, level: int) -> list[logging.StreamHandler[Any]]:
    """The handlers a record of `level` from `logger` would reach, when they are all plain
    stream handlers with this module's formatters, nothing filters on the way and logging's
    record pipeline is its own (the configuration `logging_config` makes); an empty list
    otherwise, and then the record must go through logging itself (a test's capturing
    handler, a filter, a tracing library's record factory, any other setup)."""
    if not _pipeline_untouched(logger):
        return []
    handlers: list[logging.StreamHandler[Any]] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return []
        for handler in current.handlers:
            if (
                type(handler) is not logging.StreamHandler
                or handler.filters
                or type(handler.formatter) not in (TextFormatter, JsonFormatter)
            ):
                return []
            if level >= handler.level:
                handlers.append(handler)
        current = current.parent if current.propagate else None
    return handlers


def log_fields(logger: logging.Logger, level: int, message: str, fields: Fields) -> None:
    """`logger.log(level, message, extra=fields)`, written straight to the stream handlers of
    `logging_config` as their formatters would write it, without a LogRecord and logging's
    pipeline: for the request log, one line per request, where that pipeline cost about a
    tenth of the main flow's server CPU (docs/benchmarks.md). Any other setup gets the
    record through logging."""
    if not logger.isEnabledFor(level):
        return
    handlers = direct_handlers(logger, level)
    if not handlers:
        logger.log(level, message, extra=fields)
        return
    created = time.time()
    for handler in handlers:
        formatter = cast("TextFormatter | JsonFormatter", handler.formatter)
        handler.acquire()
        try:
            # Under the handler's lock, as logging formats: the formatter keeps a cache.
            text = formatter.line(created, level, logger.name, message, fields)
            handler.stream.write(text + handler.terminator)
            handler.flush()
        except Exception:  # as StreamHandler.emit: the stream failed; logging reports it
            handler.handleError(logging.makeLogRecord({"msg": message, **fields}))
        finally:
            handler.release()


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
