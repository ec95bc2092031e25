"""What one request did, filled in as it goes and logged once when it ends."""

import re
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum

# A GraphQL Name, bounded: anything else a client sends is not echoed into the logs.
SAFE_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,99}")
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class Outcome(StrEnum):
    OK = "ok"
    USER_ERROR = "user_error"  # a business rule said no (payload errors, coded query errors)
    REJECTED = "rejected"  # refused before execution: malformed, invalid, over a limit, CSRF
    ERROR = "error"  # ours or the database's: masked errors, SERVICE_UNAVAILABLE, TIMEOUT


@dataclass
class RequestRecord:
    request_id: str
    operation_name: str | None = None
    operation_type: str | None = None
    outcome: Outcome | None = None
    # A query: "compiled", or "general" and why the compiled path did not answer it.
    read_path: str | None = None

    def note_operation(self, name: str | None, operation_type: str | None) -> None:
        self.operation_name = name if name and SAFE_NAME.fullmatch(name) else None
        self.operation_type = operation_type

    def note_outcome(self, outcome: Outcome) -> None:
        """Keeps the worst outcome seen (a batch holds several operations)."""
        order = list(Outcome)
        if self.outcome is None or order.index(outcome) > order.index(self.outcome):
            self.outcome = outcome


current_record: ContextVar[RequestRecord | None] = ContextVar("request_record", default=None)
