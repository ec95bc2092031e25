"""A real HTTP receiver for webhook tests, on 127.0.0.1, and the GraphQL documents that manage
endpoints. The receiver is a plain asyncio server speaking just enough HTTP/1.1 (keep-alive,
Content-Length), so a test decides each answer and can take the receiver down and up."""

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from tests.support.graphql import GraphQLClient
from tests.support.server import free_port

WEBHOOK_FIELDS = "id url description events enabled createdAt updatedAt"
DELIVERY_FIELDS = (
    "id eventId event status attemptCount lastStatusCode lastError nextAttemptAt "
    "lastAttemptAt deliveredAt createdAt"
)
CREATE_WEBHOOK = f"""
mutation($input: CreateWebhookInput!) {{
  createWebhook(input: $input) {{
    webhook {{ {WEBHOOK_FIELDS} }} secret errors {{ code message field }}
  }}
}}"""
UPDATE_WEBHOOK = f"""
mutation($input: UpdateWebhookInput!) {{
  updateWebhook(input: $input) {{ webhook {{ {WEBHOOK_FIELDS} }} errors {{ code message field }} }}
}}"""
DELETE_WEBHOOK = """
mutation($input: WebhookIdInput!) {
  deleteWebhook(input: $input) { deletedWebhookId errors { code message field } }
}"""
ROTATE_SECRET = f"""
mutation($input: WebhookIdInput!) {{
  rotateWebhookSecret(input: $input) {{
    webhook {{ {WEBHOOK_FIELDS} }} secret errors {{ code message field }}
  }}
}}"""
REDELIVER = f"""
mutation($input: RedeliverWebhookInput!) {{
  redeliverWebhook(input: $input) {{
    delivery {{ {DELIVERY_FIELDS} }} errors {{ code message field }}
  }}
}}"""
WEBHOOKS = f"""
query {{ webhooks(first: 10) {{ totalCount edges {{ node {{ {WEBHOOK_FIELDS} }} }} }} }}"""
DELIVERIES = f"""
query($status: [WebhookDeliveryStatus!]) {{
  webhooks(first: 3) {{
    edges {{ node {{
      id deliveries(first: 100, status: $status) {{
        totalCount edges {{ node {{ {DELIVERY_FIELDS} }} }}
      }}
    }} }}
  }}
}}"""
WAIT_S = 60.0  # nothing here measures time
ALL_EVENTS = [
    "LEAD_CREATED",
    "LEAD_STAGE_CHANGED",
    "LEAD_TRANSFERRED",
    "SALE_STAGE_CHANGED",
    "LEADS_MERGED",
]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(eq=False)
class Receiver:
    """Answers every request with `status` (and `headers`); while `hold` is set, requests wait
    for it to clear before being answered."""

    port: int = field(default_factory=free_port)
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    seen: int = 0  # requests read, answered or still held
    hold: asyncio.Event | None = None
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> "Receiver":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        """Down: the port refuses connections and open ones are cut."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, count: int) -> list[Received]:
        """Until `count` requests have arrived (the machine is shared: generous)."""
        async with asyncio.timeout(WAIT_S), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)

    async def wait_seen(self, count: int) -> None:
        """Until `count` requests have been read, held ones included."""
        async with asyncio.timeout(WAIT_S), self.arrived:
            await self.arrived.wait_for(lambda: self.seen >= count)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                received = Received(request_line.split(" ")[1], headers, body)
                async with self.arrived:
                    self.seen += 1
                    self.arrived.notify_all()
                if self.hold is not None:
                    await self.hold.wait()
                async with self.arrived:
                    self.received.append(received)
                    self.arrived.notify_all()
                extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\ncontent-length: 0\r\n{extra}\r\n".encode()
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def create_webhook(
    admin: GraphQLClient, url: str, events: list[str] | None = None, **more: Any
) -> tuple[str, str]:
    """(webhook ID, secret) of a new endpoint."""
    data = await admin(
        CREATE_WEBHOOK, {"input": {"url": url, "events": events or ALL_EVENTS, **more}}
    )
    payload = data["createWebhook"]
    assert payload["errors"] == [], payload["errors"]
    return payload["webhook"]["id"], payload["secret"]


async def deliveries(admin: GraphQLClient, webhook_id: str) -> list[dict[str, Any]]:
    data = await admin(DELIVERIES)
    for edge in data["webhooks"]["edges"]:
        if edge["node"]["id"] == webhook_id:
            return [e["node"] for e in edge["node"]["deliveries"]["edges"]]
    raise AssertionError(f"no webhook {webhook_id}")
