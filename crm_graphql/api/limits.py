"""Abuse limits checked while validating a document, before anything runs.

Depth, aliases, fields and cost are measured in one walk over each operation, as if every
fragment spread were expanded (introspection fields cost nothing: they are bounded by the
schema and off in production). A field costs 1; a field with a `first` or `last` argument
multiplies the cost of its selection by that page size. Validation runs before variables are
known (and its result is cached per document), so a page size given by a variable counts as
the largest page allowed.

Each fragment is measured once and its measure reused at every spread, so the walk is linear
in the document's size (and it runs before the specification's rules, some of which are not:
api/documents.py): fragments that each spread the previous one twice double the expanded
size per level, and expanding them spread by spread took seconds per request at 20 levels
(issue 17). The expanded size itself is limited by `max_query_fields`.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_named_type,
)
from graphql.language import OperationType

from crm_graphql.settings import Settings

PAGE_SIZE_ARGUMENTS = ("first", "last")


@dataclass(frozen=True)
class QueryLimits:
    max_depth: int
    max_aliases: int
    max_fields: int
    max_field_repeats: int
    max_cost: int
    max_page_size: int
    default_page_size: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "QueryLimits":
        return cls(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_aliases,
            max_fields=settings.max_query_fields,
            max_field_repeats=settings.max_field_repeats,
            max_cost=settings.max_query_cost,
            max_page_size=settings.max_page_size,
            default_page_size=settings.default_page_size,
        )


@dataclass
class Measure:
    depth: int = 0
    aliases: int = 0
    fields: int = 0  # every field once per expansion, introspection fields included
    cost: int = 0
    # The most fields of one response name in one selection set, fragments expanded: what
    # graphql-core's overlap check compares pairwise.
    repeats: int = 0
    # The response names of the selection set's own fields, fragments expanded, and how often.
    names: Counter[str] = field(default_factory=Counter)


def limit_error(code: str, message: str, node: OperationDefinitionNode) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": code})


def create_limits_rule(limits: QueryLimits) -> type[ValidationRule]:
    class OperationLimitsRule(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: object) -> None:
            root = root_type(self.context, node.operation)
            if root is None:
                return
            fragments = {
                d.name.value: d
                for d in self.context.document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            walk = Walk(limits, fragments, self.context.schema.type_map)
            measure = walk.selection_set(node.selection_set, root, depth=1)
            name = f"Operation {node.name.value}" if node.name else "The operation"
            if measure.depth > limits.max_depth:
                self.report_error(
                    limit_error(
                        "DEPTH_LIMIT_EXCEEDED",
                        f"{name} is nested {measure.depth} levels deep; the limit is "
                        f"{limits.max_depth} (setting max_query_depth).",
                        node,
                    )
                )
            if measure.aliases > limits.max_aliases:
                self.report_error(
                    limit_error(
                        "ALIAS_LIMIT_EXCEEDED",
                        f"{name} uses {measure.aliases} aliases; the limit is "
                        f"{limits.max_aliases} (setting max_aliases).",
                        node,
                    )
                )
            if measure.fields > limits.max_fields:
                self.report_error(
                    limit_error(
                        "FIELD_LIMIT_EXCEEDED",
                        f"{name} selects {measure.fields} fields once its fragments are "
                        f"expanded; the limit is {limits.max_fields} (setting "
                        "max_query_fields).",
                        node,
                    )
                )
            if measure.repeats > limits.max_field_repeats:
                self.report_error(
                    limit_error(
                        "FIELD_REPEAT_LIMIT_EXCEEDED",
                        f"{name} selects one field {measure.repeats} times in one selection "
                        f"set; the limit is {limits.max_field_repeats} (setting "
                        "max_field_repeats).",
                        node,
                    )
                )
            if measure.cost > limits.max_cost:
                self.report_error(
                    limit_error(
                        "COST_LIMIT_EXCEEDED",
                        f"{name} costs {measure.cost}; the limit is {limits.max_cost} "
                        "(setting max_query_cost). A field costs 1 and a page of `first: N` "
                        "costs N times its selection: ask for smaller pages or fewer fields.",
                        node,
                    )
                )

    return OperationLimitsRule


def root_type(context: ValidationContext, operation: OperationType) -> GraphQLObjectType | None:
    schema = context.schema
    if operation is OperationType.QUERY:
        return schema.query_type
    if operation is OperationType.MUTATION:
        return schema.mutation_type
    return schema.subscription_type


class Walk:
    def __init__(
        self,
        limits: QueryLimits,
        fragments: dict[str, FragmentDefinitionNode],
        types: dict[str, GraphQLNamedType],
    ) -> None:
        self.limits = limits
        self.fragments = fragments
        self.types = types
        # Each fragment's measure with its top level at depth 1, computed at its first spread.
        self.measured: dict[str, Measure] = {}
        # Fragments being measured: a spread of one of them is a cycle, which NoFragmentCycles
        # reports; this rule runs beside it, on the same unvalidated document.
        self.measuring: set[str] = set()

    def selection_set(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None, depth: int
    ) -> Measure:
        total = Measure(depth=depth - 1)
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                part = self.field(selection, parent, depth)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.type_named(condition.name.value) if condition else parent
                part = self.selection_set(selection.selection_set, inner, depth)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragment(selection.name.value)
                if fragment is None:
                    continue
                part = replace(fragment, depth=fragment.depth + depth - 1)
            else:  # pragma: no cover - the grammar has no other selections
                continue
            total.depth = max(total.depth, part.depth)
            total.aliases += part.aliases
            total.fields += part.fields
            total.cost += part.cost
            total.repeats = max(total.repeats, part.repeats)
            if isinstance(selection, FieldNode):
                total.names[(selection.alias or selection.name).value] += 1
            else:  # a fragment's fields are this selection set's fields
                total.names.update(part.names)
        if total.names:
            total.repeats = max(total.repeats, max(total.names.values()))
        return total

    def fragment(self, name: str) -> Measure | None:
        """The fragment's measure, or None for an unknown fragment or a cycle (other rules
        report both)."""
        known = self.measured.get(name)
        if known is not None:
            return known
        fragment = self.fragments.get(name)
        if fragment is None or name in self.measuring:
            return None
        self.measuring.add(name)
        inner = self.type_named(fragment.type_condition.name.value)
        measure = self.selection_set(fragment.selection_set, inner, depth=1)
        self.measuring.discard(name)
        self.measured[name] = measure
        return measure

    def field(self, node: FieldNode, parent: GraphQLNamedType | None, depth: int) -> Measure:
        if node.name.value.startswith("__"):
            return Measure(depth=depth, aliases=1 if node.alias else 0, fields=1)
        field_type: GraphQLNamedType | None = None
        argument_names: Iterable[str] = ()
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            definition = parent.fields.get(node.name.value)
            if definition is not None:
                field_type = get_named_type(definition.type)
                argument_names = definition.args.keys()
        measure = Measure(depth=depth, aliases=1 if node.alias else 0, fields=1, cost=1)
        if node.selection_set is None:
            return measure
        inner = self.selection_set(node.selection_set, field_type, depth + 1)
        multiplier = self.page_size(node, argument_names)
        measure.depth = inner.depth
        measure.repeats = inner.repeats
        measure.aliases += inner.aliases
        measure.fields += inner.fields
        measure.cost += multiplier * inner.cost
        return measure

    def page_size(self, node: FieldNode, argument_names: Iterable[str]) -> int:
        """How many items a field may return: its page size, or 1 if it is not paginated."""
        if not any(name in PAGE_SIZE_ARGUMENTS for name in argument_names):
            return 1
        sizes = [
            argument.value
            for argument in node.arguments or ()
            if argument.name.value in PAGE_SIZE_ARGUMENTS
        ]
        if not sizes:
            return self.limits.default_page_size
        largest = 0
        for value in sizes:
            if isinstance(value, IntValueNode):
                # Out-of-range sizes are refused at execution; here they count as the maximum.
                largest = max(largest, min(max(int(value.value), 0), self.limits.max_page_size))
            else:  # a variable: unknown until execution, so assume the largest page
                largest = self.limits.max_page_size
        return largest

    def type_named(self, name: str) -> GraphQLNamedType | None:
        return self.types.get(name)
