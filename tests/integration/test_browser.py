"""Debian's headless Chromium against real servers (tests/browser/driver.mjs, puppeteer-core
pinned by tests/browser/package-lock.json): GraphiQL with every other host blocked, a front
end on an allowed origin, a front end on an unlisted origin. Skipped without node and
chromium; .ci/run installs both."""

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.graphql import CREATE_LEAD, GraphQLClient, token_for
from tests.support.server import ServerProcess, api_env, free_port
from tests.support.subscriptions import TIMEOUT, feed_state, wait_for_feed

BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
MANAGER = token_for("manager")
VIEWER = "{ viewer { id role } }"
SUBSCRIPTION = "subscription { leadStageChanged { lead { id stage } from to } }"
CREATE_IN_GRAPHIQL = """
mutation CreateLead {
  createLead(input: {source: PARTNER, businessDomain: "browsers"}) {
    lead { id stage businessDomain }
    errors { code message field }
  }
}"""


def node_with_chromium() -> str:
    """node's path, once tests/browser's packages are installed; skips without node or
    chromium, unless CRM_BROWSER_TESTS=required (.ci/run)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if node is None or npm is None or not os.access(chromium, os.X_OK):
        missing = "the browser tests need node, npm and chromium (.ci/run installs them)"
        if os.environ.get("CRM_BROWSER_TESTS") == "required":
            pytest.fail(missing)
        pytest.skip(missing)
    if not (BROWSER_DIR / "node_modules" / "puppeteer-core").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, check=True)
    return node


class Driver:
    """`node driver.mjs <scenario> <options>`: its events as they come, then its result."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.final: dict[str, Any] | None = None

    async def message(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        async with asyncio.timeout(4 * TIMEOUT):
            line = await self.process.stdout.readline()
        if not line:
            error = (await self.process.stderr.read()).decode(errors="replace")
            raise AssertionError(f"the driver ended early:\n{error}")
        return json.loads(line)

    async def event(self, name: str) -> bool:
        """Whether the event came; False when the driver finished before it (its result
        says why)."""
        message = await self.message()
        if "result" in message:
            self.final = message["result"]
            return False
        assert message == {"event": name}, message
        return True

    async def result(self) -> dict[str, Any]:
        if self.final is None:
            message = await self.message()
            assert "result" in message, message
            self.final = message["result"]
        return self.final


@asynccontextmanager
async def driver(scenario: str, **options: Any) -> AsyncIterator[Driver]:
    node = node_with_chromium()
    process = await asyncio.create_subprocess_exec(
        node,
        "driver.mjs",
        scenario,
        json.dumps(options),
        cwd=BROWSER_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Driver(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def change_once_subscribed(
    browser: Driver, server: ServerProcess, subscribers_before: int
) -> str | None:
    """When the page's subscription is registered on `server` (one subscriber more than
    `subscribers_before`, counted before the page started: a shared server may hold others),
    create a lead through HTTP (its first stage change is the event the page should get) and
    return its id. None if the subscription never registered: the page's result says why."""
    if not await browser.event("subscribing"):
        return None
    try:
        await wait_for_feed(server, subscribers=subscribers_before + 1)
    except TimeoutError:
        return None
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        gql = GraphQLClient(http, MANAGER)
        data = await gql(CREATE_LEAD, {"input": {"source": "PARTNER"}})
    return data["createLead"]["lead"]["id"]


@pytest.fixture(scope="module")
def graphiql_server(
    database_url: str, server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A development server whose GraphiQL starts with a manager's token, as `serve` does
    with the embedded database. Its own process, so its subscriber count is this module's."""
    log = tmp_path_factory.mktemp("graphiql") / "server.log"
    env = api_env(database_url, CRM_GRAPHIQL_TOKEN=MANAGER)
    process = ServerProcess(env, log).start()
    yield process
    process.stop()


async def test_graphiql_renders_offline_with_the_token_and_runs_a_mutation_and_a_query(
    graphiql_server: ServerProcess,
):
    async with driver(
        "graphiql",
        api=graphiql_server.url,
        operations=[CREATE_IN_GRAPHIQL, VIEWER],
        screenshot=os.environ.get("CRM_BROWSER_SCREENSHOT"),
    ) as browser:
        result = await browser.result()

    # Rendered with nothing but the server: no request went anywhere else.
    assert result["rendered"], result
    assert result["blocked"] == []
    # The Headers tab started with the token, and both operations ran with it.
    assert json.loads(result["headers"]) == {"Authorization": f"Bearer {MANAGER}"}
    created, viewer = result["operations"]
    assert created["data"]["createLead"]["errors"] == []
    assert created["data"]["createLead"]["lead"]["businessDomain"] == "browsers"
    assert viewer["data"] == {"viewer": {"id": "test-manager", "role": "MANAGER"}}
    assert result["pageErrors"] == []


async def test_graphiql_subscription_receives_a_change_made_through_http(
    graphiql_server: ServerProcess,
):
    subscribers = (await feed_state(graphiql_server))["subscribers"]
    async with driver(
        "graphiql", api=graphiql_server.url, operations=[], subscription=SUBSCRIPTION
    ) as browser:
        lead_id = await change_once_subscribed(browser, graphiql_server, subscribers)
        result = await browser.result()

    assert result["rendered"], result
    assert result["blocked"] == []
    assert lead_id is not None, result
    change = {"lead": {"id": lead_id, "stage": "NEW"}, "from": None, "to": "NEW"}
    assert result["subscription"] == {"data": {"leadStageChanged": change}}, result
    assert result["pageErrors"] == []


@pytest.fixture(scope="module")
def listed_origin_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def cors_server(
    database_url: str,
    server: ServerProcess,
    listed_origin_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """A production server that lists one origin: http://127.0.0.1:<listed_origin_port>."""
    log = tmp_path_factory.mktemp("cors") / "server.log"
    origin = f"http://127.0.0.1:{listed_origin_port}"
    env = api_env(database_url, CRM_ENV="production", CRM_CORS_ORIGINS=origin)
    process = ServerProcess(env, log).start()
    yield process
    process.stop()


@pytest.mark.parametrize("mode", ["listed in production", "development"])
async def test_a_page_on_an_allowed_origin_queries_and_subscribes(
    mode: str, request: pytest.FixtureRequest
):
    if mode == "development":  # allows http://127.0.0.1 on any port without configuration
        # Not the shared server: other modules' TRUNCATE ... RESTART IDENTITY takes change ids
        # back below the position its live feed has reached.
        api: ServerProcess = request.getfixturevalue("graphiql_server")
        page_port = free_port()
    else:
        api = request.getfixturevalue("cors_server")
        page_port = request.getfixturevalue("listed_origin_port")
    subscribers = (await feed_state(api))["subscribers"]
    async with driver(
        "origin", api=api.url, pagePort=page_port, token=MANAGER, subscribe=True
    ) as browser:
        lead_id = await change_once_subscribed(browser, api, subscribers)
        result = await browser.result()

    assert result["fetch"].get("status") == 200, result
    assert result["fetch"]["body"]["data"] == {"viewer": {"id": "test-manager", "role": "MANAGER"}}
    assert result["socket"] == {"opened": True, "code": 1000}, result
    assert lead_id is not None, result
    change = {"lead": {"id": lead_id, "stage": "NEW"}, "from": None, "to": "NEW"}
    assert result["subscription"] == {"next": {"data": {"leadStageChanged": change}}}, result


async def test_a_page_on_an_unlisted_origin_is_refused(cors_server: ServerProcess):
    async with driver(
        "origin", api=cors_server.url, pagePort=free_port(), token=MANAGER
    ) as browser:
        result = await browser.result()

    # fetch() rejects, and Chromium says why: the CORS policy (not a network failure).
    assert result["fetch"] == {"error": "TypeError: Failed to fetch"}, result
    assert any("blocked by CORS policy" in line for line in result["console"]), result
    # The WebSocket handshake is refused: it never opens (1006: closed without a close frame).
    assert result["socket"] == {"opened": False, "code": 1006}, result
