"""What a browser page on another origin would see: preflights and WebSocket handshakes."""

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.support.graphql import token_for
from tests.support.subscriptions import connection_init, open_websocket


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": "authorization, content-type, sentry-trace",
    }


async def assert_preflight_allows(http: httpx.AsyncClient, origin: str) -> None:
    for method in ("POST", "GET"):
        answer = await http.options("/graphql", headers=preflight(origin, method))
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-origin"] == origin
        assert answer.headers["access-control-allow-methods"] == "GET, POST"
        allowed = {h.strip() for h in answer.headers["access-control-allow-headers"].split(",")}
        expected = {"authorization", "content-type", "x-crm-csrf", "apollo-require-preflight"}
        assert expected | {"sentry-trace"} <= allowed
        assert int(answer.headers["access-control-max-age"]) > 0
        assert "Origin" in answer.headers["vary"]


async def assert_preflight_refuses(http: httpx.AsyncClient, origin: str) -> None:
    answer = await http.options("/graphql", headers=preflight(origin))
    assert answer.status_code == 403
    assert not [name for name in answer.headers if name.startswith("access-control-")]
    assert answer.json()["errors"][0]["extensions"]["code"] == "ORIGIN_NOT_ALLOWED"


async def assert_websocket_opens(http_url: str, origin: str) -> None:
    async with open_websocket(http_url, origin=origin) as ws:
        await ws.send(connection_init(token_for("manager")))
        assert (await ws.receive())["type"] == "connection_ack"


async def assert_websocket_refused(http_url: str, origin: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with open_websocket(http_url, origin=origin):
            pass
    assert refused.value.response.status_code == 403
