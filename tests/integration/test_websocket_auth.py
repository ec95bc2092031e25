"""Authentication on the WebSocket (graphql-transport-ws): the token travels in the
connection_init payload; without an acceptable one the server closes with 4401 and runs
nothing. Operations here are queries, which the protocol carries the same way as
subscriptions; leadStageChanged under authentication is tested in test_subscriptions.py."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from crm_graphql.domain.access import Actor, Role
from tests.support.auth import new_lead
from tests.support.graphql import TEST_TOKENS, GraphQLClient, token_for
from tests.support.server import ServerProcess

PROTOCOL = "graphql-transport-ws"
TIMEOUT = 10


@asynccontextmanager
async def socket(server: ServerProcess) -> AsyncIterator[ClientConnection]:
    url = server.url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=[PROTOCOL], open_timeout=TIMEOUT) as ws:
        yield ws


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await ws.recv())


async def closed_with(ws: ClientConnection) -> tuple[int, str, list[dict[str, Any]]]:
    """Read until the server closes: (code, reason, the messages that came before)."""
    messages: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed) as closed:
        await read_into(ws, messages)
    assert closed.value.rcvd is not None, "the server did not send a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason, messages


async def read_into(ws: ClientConnection, messages: list[dict[str, Any]]) -> None:
    while True:
        messages.append(await receive(ws))


def subscribe(
    query: str, variables: dict[str, Any] | None = None, operation_id: str = "1"
) -> dict[str, Any]:
    return {
        "id": operation_id,
        "type": "subscribe",
        "payload": {"query": query, "variables": variables},
    }


async def result_of(ws: ClientConnection, operation_id: str) -> dict[str, Any]:
    """The payload of the operation's `next` message; other messages are skipped."""
    while True:
        message = await receive(ws)
        if message["type"] == "next" and message["id"] == operation_id:
            return message["payload"]


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {},
        {"Authorization": "Bearer not-a-token"},
        {"token": "not-a-token"},
        {"Authorization": token_for("manager")},  # the scheme is missing
    ],
    ids=["no-payload", "empty", "bad-bearer", "bad-token", "no-scheme"],
)
async def test_connection_init_without_a_valid_token_is_closed_with_4401(
    server: ServerProcess, payload: dict[str, Any] | None
):
    async with socket(server) as ws:
        init = {"type": "connection_init"} | ({"payload": payload} if payload is not None else {})
        await send(ws, init)
        await send(ws, subscribe("{ leads { totalCount } }"))
        code, reason, messages = await closed_with(ws)
    assert code == 4401
    assert reason.startswith("Unauthorized")
    assert messages == []  # no connection_ack, no data


async def test_an_expired_token_is_closed_with_the_reason(server: ServerProcess):
    expired = TEST_TOKENS.issue(Actor("alice", "Alice", Role.MANAGER), timedelta(seconds=-60))
    async with socket(server) as ws:
        await send(ws, {"type": "connection_init", "payload": {"token": expired}})
        code, reason, _ = await closed_with(ws)
    assert (code, reason) == (4401, "Unauthorized: The token has expired.")


async def test_subscribing_before_connection_init_gets_nothing(server: ServerProcess):
    async with socket(server) as ws:
        await send(ws, subscribe("{ viewer { id } }"))
        code, _, messages = await closed_with(ws)
    assert code == 4401
    assert messages == []


@pytest.mark.parametrize("style", ["authorization", "token"])
async def test_a_valid_token_in_either_form_is_acknowledged_and_names_the_caller(
    server: ServerProcess, style: str
):
    token = token_for("sales", sub="carol", name="Carol")
    payload = {"Authorization": f"Bearer {token}"} if style == "authorization" else {"token": token}
    async with socket(server) as ws:
        await send(ws, {"type": "connection_init", "payload": payload})
        assert (await receive(ws))["type"] == "connection_ack"
        await send(ws, subscribe("{ viewer { id name role } }"))
        result = await result_of(ws, "1")
    assert result["data"]["viewer"] == {"id": "carol", "name": "Carol", "role": "SALES"}


async def test_the_socket_applies_the_role_of_its_token(server: ServerProcess, gql: GraphQLClient):
    lead_id = await new_lead(gql)
    create = "mutation { createLead(input: {source: MANUAL}) { errors { code } } }"
    async with socket(server) as ws:
        await send(ws, {"type": "connection_init", "payload": {"token": token_for("sales")}})
        assert (await receive(ws))["type"] == "connection_ack"
        await send(ws, subscribe("query($id: ID!) { lead(id: $id) { id } }", {"id": lead_id}))
        hidden = await result_of(ws, "1")
        await send(ws, subscribe(create, operation_id="2"))
        refused = await result_of(ws, "2")
    assert hidden["data"] == {"lead": None}
    assert refused["data"] is None
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["FORBIDDEN"]
