"""The compiled-read caches are bounded in total: a client sending ever new values of the
variables that shape a plan costs compile time, not memory."""

import itertools

from graphql import OperationDefinitionNode, parse
from graphql.execution.values import get_variable_values

from crm_graphql.api.compiled_reads import CACHED_PLANS, CompiledReads, Plan
from crm_graphql.api.schema import schema
from crm_graphql.settings import Settings

FLAGS = 10  # 1,024 combinations of @include conditions, each its own plan
SHAPED = (
    f"query({', '.join(f'$v{i}: Boolean!' for i in range(FLAGS))}) "
    "{ leads(first: 5) { edges { node { "
    + " ".join(f"a{i}: id @include(if: $v{i})" for i in range(FLAGS))
    + " } } } }"
)


def compiled_reads() -> CompiledReads:
    return CompiledReads(schema._schema, None, Settings())  # type: ignore[arg-type]


def plan_for(reads: CompiledReads, query: str, raw: dict[str, bool]) -> Plan:
    document = parse(query)
    analysed = reads.compilable(document, query, None)
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    variables = get_variable_values(schema._schema, operation.variable_definitions or (), raw)
    assert not isinstance(variables, list)
    return reads.plan(document, analysed, variables)


def test_plans_kept_stop_at_the_bound_across_documents_and_are_released_with_their_document():
    reads = compiled_reads()
    combinations = itertools.product((True, False), repeat=FLAGS)
    for flags in itertools.islice(combinations, CACHED_PLANS + 100):
        plan = plan_for(reads, SHAPED, {f"v{i}": flag for i, flag in enumerate(flags)})
        assert isinstance(plan, Plan)  # compiled all the same, only not kept
    assert reads.plans_kept == CACHED_PLANS
    assert sum(len(analysed.plans) for analysed in reads.analysed.values()) == CACHED_PLANS

    # Another document still compiles; the shaped one's plans go when it is evicted.
    for index in range(CACHED_PLANS):
        assert isinstance(plan_for(reads, f"{{ a{index}: viewer {{ id }} }}", {}), Plan)
    assert (SHAPED, None) not in reads.analysed
    assert reads.plans_kept == sum(len(analysed.plans) for analysed in reads.analysed.values())
    assert reads.plans_kept < CACHED_PLANS
