"""The delivery worker: every server process runs one, and they share the outbox.

One lane per enabled endpoint claims that endpoint's due deliveries (db/webhooks.py: row
claims with SKIP LOCKED, a lease, one lead's events in order) and sends up to
`webhook_concurrency_per_endpoint` at once: a slow or failing endpoint holds up only its own
lane. A supervisor starts and stops lanes as endpoints come and go. Work is found by polling
(an indexed read per endpoint per interval while idle); a lane that found work looks again at
once."""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db import driver
from crm_graphql.db import webhooks as db
from crm_graphql.domain.webhooks import DeliveryStatus, RetrySchedule
from crm_graphql.events.feed import DATABASE_FAILURES
from crm_graphql.settings import Settings
from crm_graphql.webhooks.addresses import UnsafeUrl, UrlPolicy
from crm_graphql.webhooks.payloads import body, event_id
from crm_graphql.webhooks.signing import signed_headers

logger = logging.getLogger(__name__)

USER_AGENT = "crm-graphql-webhooks/1"
LEASE_MARGIN = timedelta(seconds=30)  # beyond the longest attempt, before another may retry
ERROR_MAX_CHARS = 500


def url_policy(settings: Settings) -> UrlPolicy:
    hosts = {h.strip().lower() for h in settings.webhook_allowed_hosts.split(",") if h.strip()}
    return UrlPolicy(enforce=settings.production, allowed_hosts=frozenset(hosts))


def retry_schedule(settings: Settings) -> RetrySchedule:
    return RetrySchedule(
        first_delay=timedelta(seconds=settings.webhook_retry_first_delay_s),
        max_attempts=settings.webhook_max_attempts,
    )


def log_failure(error: Exception, doing: str) -> None:
    """The database being away is expected now and then; anything else is a bug (traced)."""
    if isinstance(error, DATABASE_FAILURES):
        logger.warning("webhooks: %s: %r", doing, error)
    else:
        logger.exception("webhooks: %s: unexpected failure", doing)


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(eq=False)
class WebhookDispatcher:
    engine: AsyncEngine
    policy: UrlPolicy
    schedule: RetrySchedule
    poll_interval: float
    concurrency: int
    connect_timeout: float
    read_timeout: float
    _lanes: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    _supervisor: asyncio.Task[None] | None = None
    _client: httpx.AsyncClient | None = None

    @classmethod
    def create(cls, engine: AsyncEngine, settings: Settings) -> "WebhookDispatcher":
        return cls(
            engine=engine,
            policy=url_policy(settings),
            schedule=retry_schedule(settings),
            poll_interval=settings.webhook_poll_interval_s,
            concurrency=settings.webhook_concurrency_per_endpoint,
            connect_timeout=settings.webhook_connect_timeout_s,
            read_timeout=settings.webhook_read_timeout_s,
        )

    @property
    def attempt_timeout(self) -> float:
        """An attempt's whole duration, so a receiver trickling bytes cannot hold it longer."""
        return self.connect_timeout + 2 * self.read_timeout

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                self.read_timeout, connect=self.connect_timeout, pool=self.attempt_timeout
            ),
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would bypass the address check
            headers={"user-agent": USER_AGENT},
        )
        self._supervisor = asyncio.create_task(self._supervise(), name="webhooks-supervisor")

    async def stop(self) -> None:
        tasks = [t for t in (self._supervisor, *self._lanes.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lanes.clear()
        self._supervisor = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _supervise(self) -> None:
        while True:
            try:
                async with self.engine.connect() as conn:
                    wanted = set(await db.enabled_endpoint_ids(conn))
            except Exception as error:
                log_failure(error, "reading the endpoints")
                wanted = set(self._lanes)  # keep what runs; try again next interval
            for endpoint_id in set(self._lanes) - wanted:
                self._lanes.pop(endpoint_id).cancel()
            for endpoint_id in wanted - set(self._lanes):
                self._lanes[endpoint_id] = asyncio.create_task(
                    self._lane(endpoint_id), name=f"webhooks-endpoint-{endpoint_id}"
                )
            await asyncio.sleep(self.poll_interval)

    async def _lane(self, endpoint_id: int) -> None:
        """Claim a batch, attempt it, then record its outcomes and claim the next batch on one
        pooled connection (two statements a batch)."""
        lease = timedelta(seconds=self.attempt_timeout) + LEASE_MARGIN
        results: list[db.AttemptResult] = []
        while True:
            try:
                async with self.engine.connect() as conn:
                    if results:
                        await db.record_attempts(conn, results)
                        results = []
                    claimed = await db.claim_due(conn, endpoint_id, self.concurrency, lease)
                if claimed:
                    results = list(await asyncio.gather(*(self._attempt(r) for r in claimed)))
                    continue
            except Exception as error:  # not even a bug may end the lane for good
                log_failure(error, f"delivering to endpoint {endpoint_id}")
            await asyncio.sleep(self.poll_interval)

    async def _attempt(self, row: driver.Row) -> db.AttemptResult:
        event = db.audit_event_from_claim(row)
        secrets = [row["secret"]] + ([row["previous_secret"]] if row["previous_secret"] else [])
        outcome = await self.send(row["url"], event_id(event.id), body(event), secrets)
        if outcome.delivered:
            status, retry_in = DeliveryStatus.DELIVERED, None
        else:
            retry_in = self.schedule.delay_after(row["attempts"])
            status = DeliveryStatus.FAILED if retry_in is None else DeliveryStatus.PENDING
        return db.AttemptResult(
            row["id"], row["attempts"], status, retry_in, outcome.status_code, outcome.error
        )

    async def send(self, url: str, message_id: str, content: bytes, secrets: list[str]) -> Outcome:
        """One attempt: the URL checked again (DNS may have changed), then one signed POST to
        the checked address; redirects are not followed (a 3xx is a failed attempt)."""
        assert self._client is not None, "start() first"
        try:
            target = await self.policy.target(url)
        except UnsafeUrl as refused:
            return Outcome(error=f"refused: {refused}")
        timestamp = int(datetime.now(UTC).timestamp())
        headers = {**signed_headers(secrets, message_id, timestamp, content), **target.headers}
        try:
            async with asyncio.timeout(self.attempt_timeout):
                async with self._client.stream(
                    "POST",
                    target.url,
                    content=content,
                    headers=headers,
                    extensions=target.extensions,
                ) as response:
                    code = response.status_code
        except TimeoutError:
            return Outcome(error=f"timed out after {self.attempt_timeout:g} s")
        except httpx.HTTPError as error:
            return Outcome(error=f"{type(error).__name__}: {error}"[:ERROR_MAX_CHARS])
        return Outcome(code, None if 200 <= code < 300 else f"HTTP {code}")
