"""Live lead stage changes for one server process.

One dedicated asyncpg connection LISTENs (outside the pool: asyncpg's pool runs `UNLISTEN *`
when a connection goes back). A notification is only a wake-up: the audit table is the source
of truth. On each wake-up the feed reads every lead stage change after the last one it
delivered, in one query for all subscribers, and puts each event into the bounded queue of every
subscriber that wants it. Subscribers who asked the same thing with the same rights form an
audience: each event is rendered (executed and encoded) once per audience, and its members get
that rendering. A member whose socket can take it now (its `Sink`: open, not held back, nothing
of its own still queued or being sent) has it written straight from the fan-out loop, every
event of the batch in one write; the others get it in their queue, sent by their own task.
Those writes are most of what hundreds of listening sockets cost (a system call each): they go
out a chunk of sockets at a time with requests let in between, and while changes keep coming
the feed rests after a batch for twice as long as the batch held the loop, so that requests
keep about two thirds of the process and the next batch carries every change committed
meanwhile in the same one write per socket. A subscriber whose queue is full is cut off, so a
client that stops reading costs a bounded amount of memory. When the LISTEN connection is lost
the feed reconnects with backoff and then reads everything committed meanwhile, so subscribers
miss nothing.

Ordering: lead audit ids commit in id order (see `_order_lead_audit_ids` in
db/repository.py), so "id > last delivered" is an exact position, and a subscriber's cursor is
simply an audit id.
"""

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import asyncpg
import orjson
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db import repository as repo
from crm_graphql.db.driver import LOST_CONNECTION
from crm_graphql.db.repository import LEAD_STAGE_CHANNEL
from crm_graphql.domain.access import Actor, may_see_lead_stage_change
from crm_graphql.domain.lead import LeadStageChanged
from crm_graphql.settings import Settings

logger = logging.getLogger(__name__)

# Shown in pg_stat_activity, so operators (and tests) can find the LISTEN connection.
LISTEN_APPLICATION_NAME = "crm-graphql-listen"
FIRST_RECONNECT_DELAY = 0.1  # seconds; doubles per failed attempt up to the configured maximum
READ_BATCH_SIZE = 500  # changes read per query; a longer backlog takes several reads
REPLAY_PAGE_SIZE = 500  # changes per query when a subscriber replays history
WRITE_CHUNK = 64  # sockets written between two chances for requests to run
# When changes keep coming, the feed rests after a batch for twice as long as the batch held the
# loop, up to MAX_REST seconds: requests keep about two thirds of the process however many
# sockets listen, and the changes committed meanwhile go out together, in one write per socket.
REST_PER_HELD = 2
MAX_REST = 0.02
# The pool's errors, the driver's (the reads go straight to asyncpg), and whatever means the
# connection is lost (db/driver.py).
DATABASE_FAILURES = (
    SQLAlchemyError | asyncpg.PostgresError | asyncpg.InterfaceError | LOST_CONNECTION
)


class ConnectionLost(Exception):
    """The LISTEN connection closed (server restart, pg_terminate_backend, network)."""


def visible_to(actor: Actor, event: LeadStageChanged) -> bool:
    return may_see_lead_stage_change(actor, event.change.to_stage, event.lead.stage)


@dataclass(frozen=True, slots=True)
class Rendered:
    """An event as every member of one audience receives it, rendered once for all of them."""

    change_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class DirectWrite:
    """A subscriber's events of one batch, to be written straight to its socket."""

    subscriber: "Subscriber"
    position_before: int  # its position before them, should its own task have to send them
    items: list[Rendered]


# The payload of each event, in order; it must depend only on the audience's key and the event.
Render = Callable[[Sequence[LeadStageChanged]], Awaitable[list[bytes]]]


class Sink(Protocol):
    """Where a subscriber's rendered events can be written at once, from the fan-out loop."""

    def open(self, now: float) -> bool:
        """Whether a write now would be sent as the subscriber's own sending would (at `now`,
        seconds since the epoch: its token still valid, its socket open and not held back)."""
        ...

    def write(self, payloads: list[bytes]) -> None:
        """Sends these rendered payloads, in order."""
        ...


@dataclass(eq=False)
class Audience:
    """Subscribers whose key says they would render every event identically (same document,
    same variables, same visibility): each event one of them wants is rendered once."""

    key: Hashable
    render: Render
    members: set["Subscriber"] = field(default_factory=set)


@dataclass(eq=False)
class Subscriber:
    actor: Actor
    lead_id: int | None
    queue: asyncio.Queue["LeadStageChanged | Rendered"]
    on_overflow: Callable[[], None]
    audience: Audience | None = None
    sink: Sink | None = None
    # The last change it was given; later ones only (a cursor may be ahead of the feed).
    position: int = 0
    # Parked in `queue.get()` with nothing queued: everything it was given before has been
    # sent, so a rendered event written to its sink now cannot overtake one of its own.
    waiting: bool = False
    # The task consuming its events; once it is being cancelled (the client completed the
    # operation, or the socket ends), nothing more is written for it.
    task: asyncio.Task[object] | None = None

    def takes_directly(self, now: float) -> bool:
        return (
            self.waiting
            and self.sink is not None
            and not (self.task is not None and self.task.cancelling())
            and self.sink.open(now)
        )

    def enqueue(self, item: "LeadStageChanged | Rendered") -> None:
        """Raises asyncio.QueueFull when it has `queue_size` waiting."""
        self.queue.put_nowait(item)
        self.waiting = False  # until its task has taken what is queued

    def wants(self, event: LeadStageChanged) -> bool:
        """Whether the event is for this subscriber. Events the actor may not see never take
        room in the queue."""
        return self.follows(event) and visible_to(self.actor, event)

    def follows(self, event: LeadStageChanged) -> bool:
        """Whether it follows the event's lead (`leadId`), or every lead."""
        return self.lead_id in (None, event.lead.id)


@dataclass(eq=False)
class ChangeFeed:
    engine: AsyncEngine
    dsn: str
    queue_size: int
    health_interval: float
    max_reconnect_delay: float
    # The id of the last change fanned out; None until the first read after LISTEN began.
    position: int | None = None
    listening: bool = False
    _connections: int = 0  # LISTEN connections established so far
    _subscribers: set[Subscriber] = field(default_factory=set)
    _audiences: dict[Hashable, Audience] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def create(cls, engine: AsyncEngine, settings: Settings) -> "ChangeFeed":
        return cls(
            engine=engine,
            dsn=engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
            queue_size=settings.subscriber_queue_size,
            health_interval=settings.listen_health_interval,
            max_reconnect_delay=settings.listen_reconnect_max_backoff,
        )

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="change-feed-listen"),
            asyncio.create_task(self._deliver_forever(), name="change-feed-deliver"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def audience_count(self) -> int:
        """Distinct renderings of each live event: at most one per subscriber."""
        return len(self._audiences)

    @property
    def direct_subscriber_count(self) -> int:
        """Subscribers whose rendered events can be written straight to their socket."""
        return sum(1 for subscriber in self._subscribers if subscriber.sink is not None)

    async def changes(
        self,
        actor: Actor,
        lead_id: int | None,
        after: int | None,
        on_overflow: Callable[[], None],
        audience: tuple[Hashable, Render] | None = None,
        sink: Sink | None = None,
    ) -> AsyncGenerator[LeadStageChanged | Rendered, None]:
        """Changes to one lead (or all), after the change `after` when given, else from now,
        leaving out those the actor may not see (`may_see_lead_stage_change`).

        With `audience` (a key and the render function to use if this subscriber is the first
        with that key), live changes come as the audience's shared rendering; replayed ones,
        and a live one that arrives in the batch the subscriber joins during, come as events
        for the caller to render on its own. With a `sink` too, live renderings are written to
        it directly whenever nothing yielded before is still unsent (the caller sends what it
        is given before asking for more): those are not yielded.

        History is replayed from the audit table up to the feed's position, page by page at
        the consumer's pace; the subscriber joins the live fan-out in the same step that finds
        the replay caught up, so the switch has neither a gap nor a duplicate.
        `on_overflow` is called (once) if the consumer falls `queue_size` events behind; the
        stream then yields nothing more and the caller is expected to close the connection.
        """
        await self._ready.wait()
        position = after
        while position is not None and self.position is not None and position < self.position:
            head = self.position
            async with self.engine.connect() as conn:
                page = await repo.lead_stage_changes_after(
                    conn, position, until=head, lead_id=lead_id, limit=REPLAY_PAGE_SIZE
                )
            for event in page:
                if visible_to(actor, event):
                    yield event
            position = page[-1].change.id if len(page) == REPLAY_PAGE_SIZE else head
        subscriber = Subscriber(
            actor, lead_id, asyncio.Queue(self.queue_size), on_overflow, task=asyncio.current_task()
        )
        subscriber.position = (self.position or 0) if position is None else position
        self._join(subscriber, audience, sink)
        try:
            while True:
                subscriber.waiting = True
                try:
                    item = await subscriber.queue.get()
                finally:
                    subscriber.waiting = False
                change_id = item.change_id if isinstance(item, Rendered) else item.change.id
                # A cursor from a replica whose feed is ahead of ours can be past what we fan out.
                if change_id > subscriber.position:
                    subscriber.position = change_id
                    yield item
        finally:
            self._leave(subscriber)

    def _join(
        self,
        subscriber: Subscriber,
        audience: tuple[Hashable, Render] | None,
        sink: Sink | None,
    ) -> None:
        self._subscribers.add(subscriber)
        if audience is not None:
            subscriber.sink = sink
            key, render = audience
            subscriber.audience = self._audiences.setdefault(key, Audience(key, render))
            subscriber.audience.members.add(subscriber)

    def _leave(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        audience = subscriber.audience
        if audience is not None:
            audience.members.discard(subscriber)
            if not audience.members and self._audiences.get(audience.key) is audience:
                del self._audiences[audience.key]

    # --- fan-out ------------------------------------------------------------------------------

    async def _fan_out(self, events: list[LeadStageChanged]) -> float:
        """Gives each subscriber the events of the batch it wants, in order. Returns the
        seconds it held the loop, its awaits left out."""
        began = time.perf_counter()
        rendered = await self._render(events)
        held = time.perf_counter() - began
        began = time.perf_counter()
        # No await until each subscriber's events are queued or set aside for a direct write:
        # a subscriber joins between batches, never in the middle of the decisions. One who
        # joined while the batch was rendered finds no rendering for its audience and gets the
        # events themselves, to render on its own.
        now = time.time()
        # Each audience's visible events, with their rendering: its members see alike.
        shares: dict[Audience, list[tuple[LeadStageChanged, LeadStageChanged | Rendered]]] = {}
        direct: list[DirectWrite] = []
        for subscriber in list(self._subscribers):
            audience = subscriber.audience
            batch: list[tuple[LeadStageChanged, LeadStageChanged | Rendered]]
            if audience is None:
                batch = [(event, event) for event in events if visible_to(subscriber.actor, event)]
            elif (share := shares.get(audience)) is not None:
                batch = share
            else:
                batch = shares[audience] = [
                    (event, rendered.get((audience, event.change.id), event))
                    for event in events
                    if visible_to(subscriber.actor, event)
                ]
            position = subscriber.position
            if subscriber.lead_id is not None or (batch and batch[0][0].change.id <= position):
                batch = [
                    (event, item)
                    for event, item in batch
                    if event.change.id > position and subscriber.follows(event)
                ]
            if not batch:
                continue
            items = [item for _, item in batch]
            if isinstance(items[0], Rendered) and subscriber.takes_directly(now):
                subscriber.position = batch[-1][0].change.id
                direct.append(DirectWrite(subscriber, position, cast("list[Rendered]", items)))
                continue
            self._enqueue_all(subscriber, items)
        if events:  # monotonic: notifications may have moved it on while nobody subscribed
            self.position = max(events[-1].change.id, self.position or 0)
        held += time.perf_counter() - began
        return held + await self._write_directly(direct, now)

    async def _write_directly(self, direct: list["DirectWrite"], now: float) -> float:
        """Each socket's events of the batch in one write, WRITE_CHUNK sockets at a time with
        the loop let go in between: the writes (a system call each) are most of a batch's
        cost, and requests must not wait behind all of them. Returns the seconds it held the
        loop."""
        held = 0.0
        for start in range(0, len(direct), WRITE_CHUNK):
            if start:
                await asyncio.sleep(0)
            began = time.perf_counter()
            for write in direct[start : start + WRITE_CHUNK]:
                subscriber = write.subscriber
                if subscriber not in self._subscribers:
                    continue  # it left meanwhile: its operation is over
                if not subscriber.takes_directly(now):
                    # Held back or ending meanwhile: its own task sends them, as it should.
                    subscriber.position = write.position_before
                    self._enqueue_all(subscriber, write.items)
                    continue
                try:
                    cast("Sink", subscriber.sink).write([item.payload for item in write.items])
                except Exception:  # a bug must not end live events for the others
                    logger.exception("writing events to a subscriber's socket failed")
            held += time.perf_counter() - began
        return held

    async def _render(
        self, events: list[LeadStageChanged]
    ) -> dict[tuple[Audience | None, int], Rendered]:
        """Each event that some member of an audience wants, rendered once for the audience."""
        work = [
            (audience, wanted)
            for audience in list(self._audiences.values())
            if (wanted := [e for e in events if any(m.wants(e) for m in audience.members)])
        ]
        outcomes = await asyncio.gather(
            *(audience.render(wanted) for audience, wanted in work), return_exceptions=True
        )
        rendered: dict[tuple[Audience | None, int], Rendered] = {}
        for (audience, batch), outcome in zip(work, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # A bug must not end live events: the members render these events themselves.
                logger.error("rendering events for an audience failed", exc_info=outcome)
                continue
            for event, payload in zip(batch, outcome, strict=True):
                rendered[audience, event.change.id] = Rendered(event.change.id, payload)
        return rendered

    def _enqueue_all(
        self, subscriber: Subscriber, items: Sequence[LeadStageChanged | Rendered]
    ) -> None:
        """The items into the subscriber's queue, for its task to send; cut off if it is full."""
        try:
            for item in items:
                subscriber.enqueue(item)
        except asyncio.QueueFull:
            self._cut_off(subscriber)

    def _cut_off(self, subscriber: Subscriber) -> None:
        self._leave(subscriber)
        logger.warning(
            "subscriber too slow: %d events waiting; closing its connection", self.queue_size
        )
        while not subscriber.queue.empty():  # release the backlog now, not when the socket ends
            subscriber.queue.get_nowait()
        subscriber.on_overflow()

    async def _deliver_forever(self) -> None:
        retry_delay = FIRST_RECONNECT_DELAY
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                async with self.engine.connect() as conn:
                    if self.position is None or not self._subscribers:
                        # LISTEN is already active: anything committed from here on wakes us.
                        # With nobody to deliver to, only the position moves: a subscriber
                        # who comes later replays from the audit table up to it.
                        head = await repo.last_lead_stage_change_id(conn)
                        if self.position is None or not self._subscribers:  # still nobody
                            # Notifications may have moved it past this read meanwhile.
                            self.position = max(head, self.position or 0)
                            self._ready.set()
                            continue
                    events = await repo.lead_stage_changes_after(
                        conn, self.position, limit=READ_BATCH_SIZE
                    )
            except Exception as error:
                if isinstance(error, DATABASE_FAILURES):
                    logger.warning("reading lead stage changes failed (%s); retrying", error)
                else:  # a bug must not end live events for good
                    logger.exception("reading lead stage changes failed; retrying")
                await asyncio.sleep(retry_delay)
                retry_delay = min(retry_delay * 2, self.max_reconnect_delay)
                self._wake.set()
                continue
            retry_delay = FIRST_RECONNECT_DELAY
            held = await self._fan_out(events)
            if self._wake.is_set():  # changes came in while it went out: rest, then take them all
                await asyncio.sleep(min(held * REST_PER_HELD, MAX_REST))
            if len(events) == READ_BATCH_SIZE:
                self._wake.set()

    # --- the LISTEN connection ----------------------------------------------------------------

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: object, /) -> None:
        try:
            # asyncpg passes the payload as a str; its stubs say object.
            change_id = int(orjson.loads(payload)["id"])  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError):
            change_id = None
        if change_id is None or self.position is None:
            self._wake.set()
        elif change_id <= self.position:
            pass  # already fanned out (read in an earlier batch): nothing to read
        elif self._subscribers:
            self._wake.set()
        else:
            # Nobody to deliver to: the position moves without a read. Changes commit in id
            # order, and notify as they commit, so no change up to this id is still to come.
            self.position = change_id

    async def _listen_forever(self) -> None:
        delay = FIRST_RECONNECT_DELAY
        while True:
            connections_before = self._connections
            try:
                await self._listen()
            except (ConnectionLost, OSError, TimeoutError, asyncpg.PostgresError) as error:
                logger.warning("LISTEN connection lost (%s)", error)
            except asyncpg.InterfaceError as error:
                logger.warning("LISTEN connection failed (%s)", error)
            except Exception:  # whatever it was, the way out is a new connection
                logger.exception("LISTEN connection failed")
            if self._connections > connections_before:
                delay = FIRST_RECONNECT_DELAY  # it was up: the first retry comes quickly
            # Jitter keeps replicas from reconnecting in lockstep after a server restart.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.max_reconnect_delay)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self.dsn,
            timeout=self.health_interval,
            server_settings={"application_name": LISTEN_APPLICATION_NAME},
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        try:
            enable_tcp_keepalive(conn, self.health_interval)
            await conn.add_listener(LEAD_STAGE_CHANNEL, self._on_notification)
            self.listening = True
            self._connections += 1
            logger.info("listening for lead stage changes")
            self._wake.set()  # catch up on whatever committed while nobody listened
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.health_interval):
                        await lost.wait()
                if not lost.is_set():
                    # A dead peer sends nothing; only a query (or keepalive) finds out.
                    await conn.fetchval("SELECT 1", timeout=self.health_interval)
            raise ConnectionLost("the server closed the connection")
        finally:
            self.listening = False
            conn.terminate()


def enable_tcp_keepalive(conn: asyncpg.Connection, interval: float) -> None:
    """Let the kernel notice a silent peer too. asyncpg has no keepalive options, so this
    reaches for the socket under its transport; without one (unix socket) it does nothing."""
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family == socket.AF_UNIX:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    seconds = max(1, int(interval))
    for option, value in (
        ("TCP_KEEPIDLE", seconds),
        ("TCP_KEEPINTVL", seconds),
        ("TCP_KEEPCNT", 3),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
