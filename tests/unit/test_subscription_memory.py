"""A subscription's events leave nothing behind in its executor: a dashboard may stay subscribed
for days. graphql-core 3.3's per-event copies of the executor share a memo that grows by a few
entries per event; the app's schema executes with `EventExecutor`, which gives each event its
own."""

import gc
from collections.abc import AsyncIterator

import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from crm_graphql.api.schema import schema
from crm_graphql.strawberry_overrides import EventExecutor

SUBSCRIPTION = "subscription { events(count: 3000) { number inner { value } } }"


@strawberry.type
class Inner:
    value: int


@strawberry.type
class Event:
    number: int

    @strawberry.field
    def inner(self) -> Inner:
        return Inner(value=self.number)


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def events(self, count: int) -> AsyncIterator[Event]:
        for number in range(count):
            yield Event(number=number)


async def objects_kept_by_events(executor: type[StrawberryGraphQLCoreExecutionContext]) -> int:
    """How many more objects a live subscription holds after 2000 further events."""
    events = await strawberry.Schema(
        query=Query, subscription=Subscription, execution_context_class=executor
    ).subscribe(SUBSCRIPTION)
    assert not isinstance(events, strawberry.types.ExecutionResult)
    try:
        counts = []
        for received in (500, 2000):
            for _ in range(received):
                result = await anext(events)
                assert result.errors is None
            gc.collect()
            counts.append(len(gc.get_objects()))
        return counts[1] - counts[0]
    finally:
        await events.aclose()


async def test_events_keep_no_objects_in_the_apps_executor():
    assert schema.execution_context_class is EventExecutor
    assert await objects_kept_by_events(EventExecutor) < 200


async def test_graphql_cores_own_executor_still_keeps_objects_per_event():
    # When this fails, graphql-core no longer leaks and EventExecutor can go.
    assert await objects_kept_by_events(StrawberryGraphQLCoreExecutionContext) > 2000 * 3
