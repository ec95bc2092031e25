"""Abuse sent while another client checks that the server still answers."""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import httpx

T = TypeVar("T")

# What the issue asks of every abuse: a concurrent `{ __typename }` still answered within it.
PROBE_WITHIN_S = 1.0
# Time for the abuse's request to reach the server before the probe is sent.
ABUSE_HEAD_START_S = 0.2


async def answered_while(url: str, abuse: Awaitable[T]) -> T:
    """The abuse's result, once a `{ __typename }` sent from another client while the abuse
    is in flight has been answered within PROBE_WITHIN_S (httpx times out otherwise)."""
    task = asyncio.ensure_future(abuse)
    try:
        await asyncio.wait([task], timeout=ABUSE_HEAD_START_S)
        async with httpx.AsyncClient(base_url=url, timeout=PROBE_WITHIN_S) as probe:
            response = await probe.post("/graphql", json={"query": "{ __typename }"})
        assert response.json()["data"] == {"__typename": "Query"}
        return await task
    finally:
        task.cancel()
