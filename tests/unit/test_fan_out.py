"""The change feed's fan-out to sockets it writes directly (events/feed.py), without a database:
the writes go out a chunk of sockets at a time with the loop let go in between, and whatever
happens to a socket in between (it is held back, its operation ends) still gives every
subscriber each event once, in order."""

import asyncio
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, cast

from crm_graphql.domain.access import Actor, Role
from crm_graphql.domain.enums import LeadStage
from crm_graphql.domain.lead import LeadStageChanged
from crm_graphql.events.feed import WRITE_CHUNK, ChangeFeed, Rendered

MANAGER = Actor("manager-1", "Manager", Role.MANAGER)
SOCKETS = 2 * WRITE_CHUNK + 10  # three chunks


class RecordingSink:
    """A socket that can take frames now unless `held_back`; records each write."""

    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []
        self.held_back = False
        self.on_write: Callable[[], None] | None = None

    def open(self, now: float) -> bool:
        return not self.held_back

    def write(self, payloads: list[bytes]) -> None:
        self.writes.append(payloads)
        if self.on_write is not None:
            self.on_write()


def change(change_id: int) -> LeadStageChanged:
    stage = LeadStage.CONTACTED
    return cast(
        LeadStageChanged,
        SimpleNamespace(
            change=SimpleNamespace(id=change_id, to_stage=stage),
            lead=SimpleNamespace(id=change_id % 3, stage=stage),
        ),
    )


async def render(events: Sequence[LeadStageChanged]) -> list[bytes]:
    return [b"event %d" % event.change.id for event in events]


class Board:
    """A feed with SOCKETS subscribers in one audience, each with its own sink, each
    consuming what the feed yields to it (what its task would send) into `sent`."""

    def __init__(self) -> None:
        self.feed = ChangeFeed(
            engine=cast(Any, None), dsn="", queue_size=8, health_interval=1, max_reconnect_delay=1
        )
        self.feed.position = 0
        self.feed._ready.set()
        self.sinks = [RecordingSink() for _ in range(SOCKETS)]
        self.sent: list[list[int]] = [[] for _ in range(SOCKETS)]
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> "Board":
        for socket in range(SOCKETS):
            self.tasks.append(asyncio.create_task(self._consume(socket)))
        await asyncio.sleep(0)  # each one joins, and parks waiting for its next event
        assert self.feed.subscriber_count == SOCKETS
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _consume(self, socket: int) -> None:
        async for item in self.feed.changes(
            MANAGER, None, None, lambda: None, ("board", render), self.sinks[socket]
        ):
            assert isinstance(item, Rendered)
            self.sent[socket].append(item.change_id)

    def received(self, socket: int) -> list[int]:
        """Change ids the socket got, written directly or sent by its own task, in order."""
        written = [
            int(payload.split()[1]) for write in self.sinks[socket].writes for payload in write
        ]
        return written + self.sent[socket]

    async def fan_out(self, *change_ids: int) -> None:
        await self.feed._fan_out([change(change_id) for change_id in change_ids])
        for _ in range(3):  # the consumers take what was queued for them
            await asyncio.sleep(0)


def on_first_write(board: Board, action: Callable[[int], None]) -> list[int]:
    """When the first socket is written, `action` for the last socket not yet written (the
    sockets go in the feed's order). The list returned holds that socket once chosen."""
    chosen: list[int] = []

    def first_write() -> None:
        if not chosen:
            chosen.append(max(i for i, sink in enumerate(board.sinks) if not sink.writes))
            action(chosen[0])

    for sink in board.sinks:
        sink.on_write = first_write
    return chosen


async def test_each_socket_gets_a_batch_in_one_write() -> None:
    async with Board() as board:
        await board.fan_out(1, 2, 3)
        assert all(sink.writes == [[b"event 1", b"event 2", b"event 3"]] for sink in board.sinks)
        assert board.sent == [[] for _ in range(SOCKETS)]


async def test_requests_run_between_chunks_of_sockets() -> None:
    written_when_others_ran: list[int] = []
    async with Board() as board:

        def another_request() -> None:
            written_when_others_ran.append(sum(1 for sink in board.sinks if sink.writes))

        on_first_write(board, lambda _: asyncio.get_running_loop().call_soon(another_request))
        await board.fan_out(1)
        assert written_when_others_ran == [WRITE_CHUNK]
        assert all(board.received(socket) == [1] for socket in range(SOCKETS))


async def test_a_socket_held_back_before_its_write_gets_the_batch_through_its_task() -> None:
    async with Board() as board:

        def hold_back(socket: int) -> None:
            board.sinks[socket].held_back = True

        chosen = on_first_write(board, hold_back)
        await board.fan_out(1, 2)
        late = chosen[0]
        assert board.sinks[late].writes == []
        assert board.sent[late] == [1, 2]
        await board.fan_out(3)  # still held back: through its task too, after the others
        assert board.sent[late] == [1, 2, 3]
        assert all(board.received(socket) == [1, 2, 3] for socket in range(SOCKETS))


async def test_a_subscription_ended_before_its_write_gets_nothing_more() -> None:
    async with Board() as board:
        chosen = on_first_write(board, lambda socket: board.tasks[socket].cancel())
        await board.fan_out(1)
        late = chosen[0]
        assert board.received(late) == []
        assert board.feed.subscriber_count == SOCKETS - 1
        assert all(board.received(socket) == [1] for socket in range(SOCKETS) if socket != late)


async def test_a_lead_filter_and_a_position_ahead_still_narrow_the_batch() -> None:
    async with Board() as board:
        subscriber = next(s for s in board.feed._subscribers if s.sink is board.sinks[5])
        subscriber.position = 4  # a cursor from a replica whose feed is ahead
        other = next(s for s in board.feed._subscribers if s.sink is board.sinks[6])
        other.lead_id = 2  # change ids 2 and 5 (lead id = change id % 3)
        await board.fan_out(3, 4, 5, 6)
        assert board.received(5) == [5, 6]
        assert board.received(6) == [5]
        assert board.received(7) == [3, 4, 5, 6]
