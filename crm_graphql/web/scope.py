"""Reading an ASGI scope on the hot path."""

from starlette.types import Scope


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the header `name` (lower-case, as ASGI servers pass names), or None:
    a plain scan, cheaper than building Starlette's Headers for one lookup on every request."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None
