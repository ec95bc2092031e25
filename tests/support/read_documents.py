"""Generated read requests for the differential test of the compiled read path
(tests/inprocess/test_read_paths_differential.py): documents from hypothesis-graphql, weighted
toward leads, lead, node and viewer, then varied the ways clients vary them (aliases, named and
inline fragments, __typename, variables, directives, several operations) with arguments drawn
from the seeded data (real, missing, foreign and malformed IDs and cursors, page sizes at and
beyond the limits, filters)."""

import dataclasses
import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import graphql
from hypothesis import strategies as st
from hypothesis_graphql import Mode, queries

from crm_graphql.api.ids import encode_global_id

SCHEMA = graphql.build_schema((Path(__file__).resolve().parents[2] / "schema.graphql").read_text())
QUERY_TYPE = SCHEMA.query_type
assert QUERY_TYPE is not None

# Callers: every role, a second manager (owner of other leads) and no token at all. Admins and
# managers read the same leads, so each request goes to one of them, to sales and sometimes
# without a token: more documents in the same time.
READ_EVERYTHING = ("admin", "manager", "manager-2")
# Aliases the varier adds at most: with hypothesis-graphql's own, most documents stay within
# the server's limit (15).
ALIAS_BUDGET = 8


def shape_conflicts() -> dict[str, frozenset[str]]:
    """For each type implementing an interface, its fields that another implementation has
    with another type (Lead.stage and Sale.stage): in fragments side by side under the
    interface they would be a validation error."""
    conflicts: dict[str, frozenset[str]] = {}
    for interface in SCHEMA.type_map.values():
        if not isinstance(interface, graphql.GraphQLInterfaceType):
            continue
        implementations = SCHEMA.get_possible_types(interface)
        for own in implementations:
            conflicts[own.name] = frozenset(
                field_name
                for field_name, definition in own.fields.items()
                for other in implementations
                if other is not own
                and field_name in other.fields
                and str(other.fields[field_name].type) != str(definition.type)
            )
    return conflicts


SHAPE_CONFLICTS = shape_conflicts()
ACCEPT_HEADERS = (None, "application/json", "application/graphql-response+json")
PAGE_SIZES = (None, 1, 2, 3, 7, 20, 50, 100)
REFUSED_PAGE_SIZES = (0, -1, 101, 2**31 - 1)
MALFORMED_CURSORS = ("", "not a cursor", "WyJ4IiwxLDFd", "W10", "WyJTQ09SRSIsbnVsbCwxXQ")


@dataclass(frozen=True)
class SeededData:
    """What the generator draws arguments from: the seeded rows' IDs and the cursors the
    server issued for them, in every ordering."""

    lead_ids: Sequence[str]
    sale_ids: Sequence[str]
    # By ordering: "CREATED_AT", "UPDATED_AT" and "SCORE" for leads, "sales" for sales.
    cursors: Mapping[str, Sequence[str]]
    search_terms: Sequence[str]

    def ids(self) -> list[str]:
        missing = [encode_global_id("Lead", 987_654_321), encode_global_id("Sale", 987_654_321)]
        malformed = [
            "",
            "not an id",
            encode_global_id("User", 1),
            encode_global_id("Lead", 0),
            "TGVhZDowMQ==",  # Lead:01, a spelling the API never issues
            "TGVhZDox",  # Lead:1 without its padding
            encode_global_id("Lead", 2**63),
        ]
        return [*self.lead_ids, *self.sale_ids, *missing, *malformed]


@dataclass(frozen=True)
class ReadRequest:
    document: str
    variables: dict[str, Any] | None
    operation_name: str | None
    accept: str | None
    method: str  # GET or POST
    callers: tuple[str | None, ...]  # token names (tests/inprocess); None: no token


def ordering_of(order_by: graphql.ValueNode | None) -> str:
    """The field a literal orderBy sorts leads by (CREATED_AT unless it names another)."""
    if isinstance(order_by, graphql.ObjectValueNode):
        for object_field in order_by.fields:
            if object_field.name.value == "field" and isinstance(
                object_field.value, graphql.EnumValueNode
            ):
                return object_field.value.value
    return "CREATED_AT"


def value_node(value: Any) -> graphql.ValueNode:
    if value is None:
        return graphql.NullValueNode()
    if isinstance(value, bool):
        return graphql.BooleanValueNode(value=value)
    if isinstance(value, int):
        return graphql.IntValueNode(value=str(value))
    if isinstance(value, float):
        return graphql.FloatValueNode(value=repr(value))
    return graphql.StringValueNode(value=value)


def name(value: str) -> graphql.NameNode:
    return graphql.NameNode(value=value)


def field_node(
    field_name: str,
    selections: Sequence[graphql.SelectionNode] = (),
    arguments: Sequence[graphql.ArgumentNode] = (),
    alias: str | None = None,
) -> graphql.FieldNode:
    return graphql.FieldNode(
        alias=name(alias) if alias else None,
        name=name(field_name),
        arguments=tuple(arguments),
        directives=(),
        selection_set=graphql.SelectionSetNode(selections=tuple(selections))
        if selections
        else None,
    )


class Varier:
    """Rewrites one generated document, deciding by a seeded random generator (cheap next
    to Hypothesis's draws, and as reproducible: the seed is drawn)."""

    def __init__(self, rng: random.Random, data: SeededData) -> None:
        self.rng = rng
        self.data = data
        self.numbers = itertools.count(1)
        self.aliases = 0
        self.fragments: list[graphql.FragmentDefinitionNode] = []
        self.variable_definitions: list[graphql.VariableDefinitionNode] = []
        self.variables: dict[str, Any] = {}
        # Other values each variable may take, for the same document sent again.
        self.alternatives: dict[str, Sequence[Any]] = {}

    def chance(self, percent: int) -> bool:
        return self.rng.randrange(100) < percent

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.numbers)}"

    def alias(self, field_name: str) -> str | None:
        """A new response name, while the document stays within the alias limit (15)."""
        if self.aliases >= ALIAS_BUDGET:
            return None
        self.aliases += 1
        return self.fresh(f"{field_name}_")

    def page_arguments(
        self, field_name: str, arguments: dict[str, graphql.ValueNode]
    ) -> dict[str, graphql.ValueNode]:
        """Mostly pages one way, of sizes within the limit, from cursors the server issued for
        the page's ordering; sometimes what the server refuses."""
        direction = self.rng.choices(("forward", "backward", "as generated"), (65, 20, 15))[0]
        if direction == "forward":
            arguments = {k: v for k, v in arguments.items() if k not in ("last", "before")}
        elif direction == "backward":
            arguments = {k: v for k, v in arguments.items() if k not in ("first", "after")}
        ordering = "sales" if field_name == "sales" else ordering_of(arguments.get("orderBy"))
        for key in arguments.keys() & {"first", "last"}:
            sizes = REFUSED_PAGE_SIZES if self.chance(12) else PAGE_SIZES
            arguments[key] = value_node(self.rng.choice(sizes))
        for key in arguments.keys() & {"after", "before"}:
            kind = self.rng.choices(
                ("none", "issued", "other ordering", "malformed"), (35, 45, 8, 12)
            )[0]
            if kind == "issued" and self.data.cursors.get(ordering):
                arguments[key] = value_node(self.rng.choice(self.data.cursors[ordering]))
            elif kind == "other ordering":
                other = self.rng.choice(sorted(self.data.cursors.keys() - {ordering}))
                arguments[key] = value_node(self.rng.choice(self.data.cursors[other]))
            elif kind == "malformed":
                arguments[key] = value_node(self.rng.choice(MALFORMED_CURSORS))
            else:
                arguments[key] = graphql.NullValueNode()
        return arguments

    def filter_value(self, value: graphql.ObjectValueNode) -> graphql.ObjectValueNode:
        """Fewer conditions, with values from the data: a generated filter seldom matches
        a lead, and an empty page compares little."""
        fields = []
        for object_field in value.fields:
            if self.chance(50):
                continue
            field_value = object_field.value
            if object_field.name.value == "search" and self.chance(80):
                field_value = value_node(self.rng.choice(self.data.search_terms))
            elif object_field.name.value == "minScore" and self.chance(80):
                field_value = value_node(self.rng.choice((0.0, 0.3, 0.6, 1.0, -1.0)))
            fields.append(graphql.ObjectFieldNode(name=object_field.name, value=field_value))
        return graphql.ObjectValueNode(fields=tuple(fields))

    def arguments(
        self, node: graphql.FieldNode, definition: graphql.GraphQLField | None, root: bool
    ) -> list[graphql.ArgumentNode]:
        arguments = {argument.name.value: argument.value for argument in node.arguments or ()}
        if definition is not None and "after" in definition.args:
            arguments = self.page_arguments(node.name.value, arguments)
        if isinstance(arguments.get("filter"), graphql.ObjectValueNode):
            if self.chance(60):
                del arguments["filter"]
            else:
                arguments["filter"] = self.filter_value(arguments["filter"])
        out = []
        for arg_name, value in arguments.items():
            arg_definition = definition.args.get(arg_name) if definition else None
            nullable = arg_definition is None or graphql.is_nullable_type(arg_definition.type)
            if isinstance(value, graphql.NullValueNode) and nullable and self.chance(50):
                continue  # left out instead of an explicit null: the same to a client
            if arg_definition is not None and self.chance(35 if root else 15):
                value = self.as_variable(arg_name, arg_definition.type, value)
            out.append(graphql.ArgumentNode(name=name(arg_name), value=value))
        return out

    def as_variable(
        self, arg_name: str, type_: graphql.GraphQLInputType, value: graphql.ValueNode
    ) -> graphql.VariableNode:
        variable = self.fresh(arg_name)
        self.variable_definitions.append(
            graphql.VariableDefinitionNode(
                variable=graphql.VariableNode(name=name(variable)),
                type=graphql.parse_type(str(type_)),
                default_value=None,
                directives=(),
            )
        )
        literal = graphql.value_from_ast_untyped(value)
        # A nullable variable's null may also be sent as no value at all.
        if literal is not None or isinstance(type_, graphql.GraphQLNonNull) or self.chance(50):
            self.variables[variable] = literal
        alternatives = {
            "first": PAGE_SIZES + REFUSED_PAGE_SIZES,
            "last": PAGE_SIZES + REFUSED_PAGE_SIZES,
            "after": [cursor for cursors in self.data.cursors.values() for cursor in cursors],
            "before": [cursor for cursors in self.data.cursors.values() for cursor in cursors],
            "id": self.data.ids(),
            "includeMerged": (True, False),
            "if": (True, False),
        }
        if arg_name in alternatives:
            self.alternatives[variable] = alternatives[arg_name]
        return graphql.VariableNode(name=name(variable))

    def rebound(self, request: ReadRequest) -> ReadRequest | None:
        """The same document with other values for its variables (plans are cached per
        document), or None when it has none to change."""
        if not self.alternatives:
            return None
        variables = dict(request.variables or {})
        for variable, alternatives in self.alternatives.items():
            variables[variable] = self.rng.choice(alternatives)
        return dataclasses.replace(request, variables=variables)

    def extra_selections(
        self,
        parent: graphql.GraphQLObjectType | graphql.GraphQLInterfaceType,
        depth: int,
        abstract: bool = False,
    ) -> list[graphql.SelectionNode]:
        """A few more of the type's fields, picked from the schema down to `depth` levels:
        hypothesis-graphql's selections are narrow, so most fields would rarely be asked
        for together (a page's nodes with their score's staleness, say)."""
        if isinstance(parent, graphql.GraphQLInterfaceType):
            return [
                field_node("id"),
                *(
                    graphql.InlineFragmentNode(
                        type_condition=graphql.NamedTypeNode(name=name(possible.name)),
                        directives=(),
                        selection_set=graphql.SelectionSetNode(
                            selections=tuple(self.extra_selections(possible, depth, True))
                        ),
                    )
                    for possible in SCHEMA.get_possible_types(parent)
                ),
            ]
        candidates = [
            field_name
            for field_name, definition in parent.fields.items()
            if not any(graphql.is_required_argument(a) for a in definition.args.values())
            and (depth > 0 or graphql.is_leaf_type(graphql.get_named_type(definition.type)))
            and not (abstract and field_name in SHAPE_CONFLICTS.get(parent.name, ()))
        ]
        # Fields leading back to a Lead (mergedInto, Sale.lead, ...) less often: clients
        # seldom ask for them, and each multiplies the document.
        weights = [
            1 if graphql.get_named_type(parent.fields[f].type).name != "Lead" else 0.2
            for f in candidates
        ]
        picked = set(self.rng.choices(candidates, weights, k=self.rng.randint(1, 8)))
        selections: list[graphql.SelectionNode] = []
        for field_name in picked:
            definition = parent.fields[field_name]
            inner = graphql.get_named_type(definition.type)
            subselections = (
                []
                if graphql.is_leaf_type(inner)
                else self.extra_selections(cast("graphql.GraphQLObjectType", inner), depth - 1)
            )
            arguments = [
                graphql.ArgumentNode(name=name(arg_name), value=value_node(self.chance(50)))
                for arg_name, argument in definition.args.items()
                if argument.type == graphql.GraphQLNonNull(graphql.GraphQLBoolean)
                and self.chance(60)
            ]
            # A field with arguments gets a name of its own: no conflict with the same field
            # under other arguments.
            alias = self.alias(field_name) if definition.args else None
            if definition.args and alias is None:
                continue
            selections.append(field_node(field_name, subselections, arguments, alias))
        return selections

    def selection_set(
        self,
        selection_set: graphql.SelectionSetNode,
        parent: graphql.GraphQLNamedType | None,
        root: bool = False,
        depth: int = 0,
        abstract: bool = False,
    ) -> graphql.SelectionSetNode:
        """`abstract`: the selections of a fragment on one of an interface's types, which
        must not give a response name two shapes."""
        given = list(selection_set.selections)
        composite = isinstance(parent, graphql.GraphQLObjectType | graphql.GraphQLInterfaceType)
        if composite and not root and depth <= 4 and self.chance(55):
            extra = self.extra_selections(cast("graphql.GraphQLObjectType", parent), 2, abstract)
            given += extra
        selections: list[graphql.SelectionNode] = []
        for selection in given:
            if isinstance(selection, graphql.FieldNode):
                selections.append(self.field(selection, parent, root, depth))
                again = selection.arguments or selection.selection_set
                if again and self.aliases < ALIAS_BUDGET and self.chance(6):
                    # Again under another name, with arguments of its own.
                    selections.append(self.field(selection, parent, root, depth, alias=True))
            elif isinstance(selection, graphql.InlineFragmentNode):
                condition = selection.type_condition
                inner = SCHEMA.get_type(condition.name.value) if condition else parent
                selections.append(
                    graphql.InlineFragmentNode(
                        type_condition=condition,
                        directives=selection.directives,
                        selection_set=self.selection_set(
                            selection.selection_set,
                            inner,
                            depth=depth,
                            abstract=isinstance(parent, graphql.GraphQLInterfaceType),
                        ),
                    )
                )
            else:
                selections.append(selection)
        if self.chance(20):
            selections.insert(self.rng.randint(0, len(selections)), field_node("__typename"))
        if composite:
            if self.chance(12):
                selections = [self.named_fragment(selections, parent)]
            elif self.chance(5):
                selections = [
                    graphql.InlineFragmentNode(
                        type_condition=graphql.NamedTypeNode(name=name(parent.name))
                        if self.chance(50)
                        else None,
                        directives=(),
                        selection_set=graphql.SelectionSetNode(selections=tuple(selections)),
                    )
                ]
        return graphql.SelectionSetNode(selections=tuple(selections))

    def named_fragment(
        self, selections: list[graphql.SelectionNode], on: graphql.GraphQLNamedType
    ) -> graphql.FragmentSpreadNode:
        fragment = self.fresh("Part")
        self.fragments.append(
            graphql.FragmentDefinitionNode(
                name=name(fragment),
                type_condition=graphql.NamedTypeNode(name=name(on.name)),
                variable_definitions=None,
                directives=(),
                selection_set=graphql.SelectionSetNode(selections=tuple(selections)),
            )
        )
        return graphql.FragmentSpreadNode(name=name(fragment), directives=())

    def field(
        self,
        node: graphql.FieldNode,
        parent: graphql.GraphQLNamedType | None,
        root: bool,
        depth: int,
        alias: bool = False,
    ) -> graphql.FieldNode:
        fields = getattr(parent, "fields", {})
        definition = fields.get(node.name.value)
        inner = graphql.get_named_type(definition.type) if definition else None
        alias_node = node.alias
        if alias or self.chance(6):
            new_alias = self.alias(node.name.value)
            alias_node = name(new_alias) if new_alias else alias_node
        directives: tuple[graphql.DirectiveNode, ...] = ()
        if self.chance(5):
            directive = self.rng.choice(("include", "skip"))
            condition: graphql.ValueNode = graphql.BooleanValueNode(value=self.chance(50))
            if self.chance(50):
                condition = self.as_variable(
                    "if", graphql.GraphQLNonNull(graphql.GraphQLBoolean), condition
                )
            directives = (
                graphql.DirectiveNode(
                    name=name(directive),
                    arguments=(graphql.ArgumentNode(name=name("if"), value=condition),),
                ),
            )
        return graphql.FieldNode(
            alias=alias_node,
            name=node.name,
            arguments=tuple(self.arguments(node, definition, root)),
            directives=directives,
            selection_set=self.selection_set(node.selection_set, inner, depth=depth + 1)
            if node.selection_set
            else None,
        )

    def request(self, document: graphql.DocumentNode) -> ReadRequest:
        operation = document.definitions[0]
        assert isinstance(operation, graphql.OperationDefinitionNode)
        selection_set = self.selection_set(operation.selection_set, QUERY_TYPE, root=True)
        operation_name = "Read" if self.chance(30) else None
        definitions: list[graphql.DefinitionNode] = [
            graphql.OperationDefinitionNode(
                operation=graphql.OperationType.QUERY,
                name=name(operation_name) if operation_name else None,
                variable_definitions=tuple(self.variable_definitions),
                directives=(),
                selection_set=selection_set,
            ),
            *self.fragments,
        ]
        if operation_name and self.chance(30):
            # A second operation in the document: the client picks one by name.
            definitions.append(graphql.parse("query Other { viewer { id role } }").definitions[0])
            operation_name = self.rng.choice(("Read", "Other"))
        text = graphql.print_ast(graphql.DocumentNode(definitions=tuple(definitions)))
        return ReadRequest(
            document=text,
            variables=self.variables if self.variable_definitions or self.chance(50) else None,
            operation_name=operation_name if operation_name and self.chance(80) else None,
            accept=self.rng.choice(ACCEPT_HEADERS),
            method="GET" if self.chance(15) else "POST",
            callers=(
                self.rng.choice(READ_EVERYTHING),
                "sales",
                *((None,) if self.chance(20) else ()),
            ),
        )


def graft_lead_selection(
    page: graphql.DocumentNode, lead: graphql.DocumentNode
) -> graphql.DocumentNode:
    """A leads page whose edges carry the selection generated for one lead: hypothesis-graphql
    rarely reaches a page's nodes, where the compiled path does most of its work."""
    (page_operation,) = page.definitions
    (lead_operation,) = lead.definitions
    assert isinstance(page_operation, graphql.OperationDefinitionNode)
    assert isinstance(lead_operation, graphql.OperationDefinitionNode)
    (page_field,) = page_operation.selection_set.selections
    (lead_field,) = lead_operation.selection_set.selections
    assert isinstance(page_field, graphql.FieldNode)
    assert isinstance(lead_field, graphql.FieldNode)
    assert lead_field.selection_set is not None
    edges = field_node(
        "edges", [field_node("cursor"), field_node("node", lead_field.selection_set.selections)]
    )
    own = page_field.selection_set.selections if page_field.selection_set else ()
    grafted = field_node(page_field.name.value, [*own, edges], page_field.arguments or ())
    return graphql.DocumentNode(
        definitions=(
            graphql.OperationDefinitionNode(
                operation=graphql.OperationType.QUERY,
                name=None,
                variable_definitions=(),
                directives=(),
                selection_set=graphql.SelectionSetNode(selections=(grafted,)),
            ),
        )
    )


def read_requests(data: SeededData, variants: int) -> st.SearchStrategy[list[ReadRequest]]:
    """`variants` requests made from one generated document."""
    ids = st.sampled_from(data.ids()).map(lambda value: graphql.StringValueNode(value=value))
    instants = st.sampled_from(
        ("2020-01-01T00:00:00+00:00", "2100-01-01T00:00:00Z", "2026-12-06T12:00:00", "soon")
    ).map(lambda value: graphql.StringValueNode(value=value))
    custom = {"ID": ids, "DateTime": instants}

    def generated(*fields: str, mode: Mode = Mode.POSITIVE) -> st.SearchStrategy[Any]:
        return queries(
            SCHEMA, fields=fields, custom_scalars=custom, mode=mode, print_ast=lambda doc: doc
        )

    # Weighted toward the fields the compiled path covers, by repetition.
    pages = st.builds(graft_lead_selection, generated("leads"), generated("lead"))
    documents = st.one_of(
        pages,
        pages,
        pages,
        pages,
        generated("leads"),
        generated("lead"),
        generated("lead"),
        generated("lead"),
        generated("node"),
        generated("node"),
        generated("viewer"),
        generated("leads", "lead", "node", "viewer"),
        generated("sales"),
        generated("leads", "lead", "node", mode=Mode.NEGATIVE),
    )

    @st.composite
    def requests(draw: st.DrawFn) -> list[ReadRequest]:
        # Printed and parsed again: the varier builds new nodes and hypothesis-graphql's may
        # be shared between examples.
        document = graphql.parse(graphql.print_ast(draw(documents)))
        seed = draw(st.integers(0, 2**32))
        requests = []
        for variant in range(variants):
            varier = Varier(random.Random(seed + variant), data)
            request = varier.request(document)
            requests.append(request)
            if (again := varier.rebound(request)) is not None:
                requests.append(again)
        return requests

    return requests()
