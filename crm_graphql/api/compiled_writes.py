"""Compiled writes: the mutations of api/mutations.py answered without the general executor.

Through graphql-core's executor and Strawberry's resolver wrapping, a mutation of the main
flow cost about 0.5 ms of CPU in the GraphQL layer, more than its use case (issue 18). A
mutation document is analysed once into a plan: the root field's resolver (the general
path's own, called as Strawberry calls it: arguments coerced by graphql-core and converted by
Strawberry) and a function per payload selection that reads the payload's attributes and
serializes each leaf with the schema's own scalar and enum types. The response is then made
by the general path's own `process_result` from a result shaped as graphql-core shapes it.

Unlike a read, a write cannot be run twice, so everything that could make the plan answer
otherwise than the general path is decided before the resolver runs: a document or field the
plan does not cover, variables that do not fit, no or an expired token: those requests go to
the general path, counted with their reason (`CompiledWrites.counts`, in /readyz, and the
request log's `read_path`). Once the resolver runs, an error it raises is answered as the
general executor answers it: located at the root field, logged and masked by the schema's own
`client_errors`, `data` null (every payload is non-null). If the payload cannot be built from
what the resolver returned, graphql-core's executor completes that value instead, so partial
data and errors come as the general path gives them.
"""

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from inspect import isawaitable
from operator import attrgetter
from typing import Any, cast

from graphql import (
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
)
from graphql.execution.values import VariableValues
from graphql.language import Visitor, visit
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import InputContext
from strawberry.types.field import StrawberryField

from crm_graphql.api.compiled_inputs import argument_coercer
from crm_graphql.api.compiled_reads import CACHED_PLANS, Compiler, Unsupported
from crm_graphql.api.context import Context
from crm_graphql.api.schema import CrmSchema

# The mutations whose resolvers read nothing of their Info but its context (api/mutations.py),
# by their Python names: the plan hands them a ContextInfo. Named one by one, so that a
# mutation added later takes the general path until someone has checked it does too.
COVERED = frozenset(
    {
        "create_lead",
        "update_lead",
        "merge_leads",
        "log_activity",
        "analyze_lead",
        "advance_stage",
        "transfer_to_sales",
        "advance_sale_stage",
        "assign_lead",
    }
)

Build = Callable[[Any], Any]


class NotAMutation(Unsupported):
    """A query or subscription, or no one operation chosen: not for this compiler."""


@dataclass(frozen=True)
class ContextInfo:
    """The Info a covered resolver gets: those resolvers read only `info.context`."""

    context: Context


def strawberry_field(definition: GraphQLField) -> StrawberryField:
    field: StrawberryField = definition.extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
    return field


class Directives(Visitor):
    """Finds any directive: a plan is compiled once per document, so nothing in its selection
    may depend on the variables (@skip, @include)."""

    found = False

    def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
        self.found = True


def has_directives(document: DocumentNode) -> bool:
    finder = Directives()
    visit(document, finder)
    return finder.found


def reader(definition: GraphQLField) -> Build:
    """How the general path reads a field of its parent object: the attribute, or the field's
    synchronous resolver when it takes nothing but the object."""
    field = strawberry_field(definition)
    if field.permission_classes or field.extensions:
        raise Unsupported("field extension")
    resolver = field.base_resolver
    if resolver is None:
        return attrgetter(field.python_name)
    if (
        resolver.is_async
        or resolver.arguments
        or resolver.info_parameter
        or resolver.parent_parameter
        or resolver.root_parameter
        or not resolver.self_parameter
    ):
        raise Unsupported(f"resolver {field.python_name}")
    return cast("Build", resolver.wrapped_func)  # a method: `self_parameter` above


def not_null(build: Build) -> Build:
    def checked(value: Any) -> Any:
        if value is None:
            # graphql-core would report a null in a non-null field; the plan cannot.
            raise TypeError("null in a non-null field")
        return build(value)

    return checked


def nullable(build: Build) -> Build:
    return lambda value: None if value is None else build(value)


def completion(compiler: Compiler, nodes: list[FieldNode], type_: GraphQLOutputType) -> Build:
    """The function completing a field's value of `type_` as graphql-core does."""
    if isinstance(type_, GraphQLNonNull):
        return not_null(completion(compiler, nodes, type_.of_type))
    if isinstance(type_, GraphQLList):
        item = completion(compiler, nodes, type_.of_type)
        return nullable(lambda values: [item(value) for value in values])
    if isinstance(type_, GraphQLScalarType | GraphQLEnumType):
        return nullable(type_.serialize)
    if isinstance(type_, GraphQLObjectType):
        return nullable(object_builder(compiler, nodes, type_))
    raise Unsupported(f"type {type_}")


def object_builder(compiler: Compiler, nodes: list[FieldNode], type_: GraphQLObjectType) -> Build:
    """The function building an object's selection, keys in the general executor's order."""
    interfaces = tuple(interface.name for interface in type_.interfaces)
    fields: list[tuple[str, Build, Build]] = []
    for key, name, group in compiler.subfields(nodes, type_.name, interfaces):
        if name == "__typename":
            fields.append((key, lambda _: type_.name, lambda name: name))
            continue
        definition = type_.fields[name]
        if any(node.arguments for node in group):
            raise Unsupported(f"arguments of {type_.name}.{name}")
        fields.append((key, reader(definition), completion(compiler, group, definition.type)))
    return lambda value: {key: complete(read(value)) for key, read, complete in fields}


@dataclass(frozen=True)
class Plan:
    """A compiled mutation: its root field (response key, node, definitions), the resolver's
    arguments from the request's variables, and the function building the payload."""

    key: str
    node: FieldNode
    definition: GraphQLField
    field: StrawberryField
    operation: OperationDefinitionNode
    arguments: Callable[[dict[str, Any]], dict[str, Any]]
    call: "ResolverCall"
    build: Build


@dataclass(frozen=True)
class ResolverCall:
    """How Strawberry's `get_arguments` calls a covered mutation's resolver, worked out once:
    its one argument, an input object, built by the input class's `from_input` hook (the
    step Strawberry's `convert_argument` reaches for it, after checks that depend on the
    type alone), the Info where the resolver asks for it, and `self` as None."""

    argument: str  # its GraphQL name, the key of the coerced arguments
    python_name: str
    input_class: type
    from_input: Callable[[type, Any, InputContext], Any]
    pass_self: bool
    info_name: str | None

    def arguments(
        self, coerced: dict[str, Any], info: "ContextInfo", schema: CrmSchema
    ) -> tuple[list[Any], dict[str, Any]]:
        context = InputContext(
            info=info,  # type: ignore[arg-type]
            config=schema.config,
            scalar_registry=schema.schema_converter.scalar_registry,
            path=(self.argument,),
        )
        kwargs = {
            self.python_name: self.from_input(self.input_class, coerced[self.argument], context)
        }
        if self.info_name is not None:
            kwargs[self.info_name] = info
        return ([None] if self.pass_self else []), kwargs


def resolver_call(
    field: StrawberryField, argument_name: str, argument: GraphQLArgument
) -> ResolverCall:
    """Unsupported unless the mutation's resolver takes its one argument as an input class
    with a `from_input` hook (api/inputs.py's `input_type` gives every input one) and none of
    Strawberry's root or parent parameters."""
    resolver = field.base_resolver
    if len(field.arguments) != 1:
        raise Unsupported("arguments")
    [strawberry_argument] = field.arguments
    input_class = strawberry_argument.type
    definition = getattr(input_class, "__strawberry_definition__", None)
    if (
        resolver is None
        or not isinstance(input_class, type)
        or definition is None
        or definition.from_input is None
        or argument.out_name not in (None, argument_name)
        or resolver.parent_parameter is not None
        or resolver.root_parameter is not None
    ):
        raise Unsupported("arguments")
    info = resolver.info_parameter
    return ResolverCall(
        argument_name,
        strawberry_argument.python_name,
        input_class,
        definition.from_input,
        resolver.self_parameter is not None,
        info.name if info is not None else None,
    )


def input_variable(operation: OperationDefinitionNode, node: FieldNode) -> str:
    """The name of the root field's one argument's variable; Unsupported unless that argument
    is a variable of its exact input type, non-null, without a default (what clients and
    generated code send), and the operation's only one."""
    arguments = node.arguments or ()
    if len(arguments) != 1 or not isinstance(arguments[0].value, VariableNode):
        raise Unsupported("arguments")
    if len(operation.variable_definitions or ()) != 1:
        raise Unsupported("variables")
    name = arguments[0].value.name.value
    for definition in operation.variable_definitions or ():
        if definition.variable.name.value == name:
            type_ = definition.type
            if (
                definition.default_value is None
                and isinstance(type_, NonNullTypeNode)
                and isinstance(type_.type, NamedTypeNode)
            ):
                return name
    raise Unsupported("input variable")


def compile_plan(schema: GraphQLSchema, document: DocumentNode, operation_name: str | None) -> Plan:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [
        op
        for op in operations
        if operation_name is None or (op.name is not None and op.name.value == operation_name)
    ]
    if len(chosen) != 1 or (operation_name is None and len(operations) != 1):
        raise NotAMutation("operation not chosen")
    operation = chosen[0]
    if operation.operation is not OperationType.MUTATION:
        raise NotAMutation(operation.operation.value)
    if has_directives(document):
        raise Unsupported("directive")
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        raise Unsupported("root fields")
    node = selections[0]
    name = node.name.value
    mutation_type = schema.mutation_type
    assert mutation_type is not None
    definition = mutation_type.fields.get(name)  # None: `__typename`
    if definition is None or strawberry_field(definition).python_name not in COVERED:
        raise Unsupported(f"Mutation.{name}")
    root = strawberry_field(definition)
    if root.permission_classes or root.extensions:  # the general executor applies them
        raise Unsupported("field extension")
    variable = input_variable(operation, node)
    if len(definition.args) != 1:
        raise Unsupported("arguments")
    [(argument_name, argument)] = definition.args.items()
    if argument_name != (node.arguments or ())[0].name.value:
        raise Unsupported("arguments")
    arguments = argument_coercer(variable, argument_name, argument)
    call = resolver_call(root, argument_name, argument)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    # No directives: the selection does not read the variables.
    compiler = Compiler(schema, fragments, VariableValues(sources={}, coerced={}))
    build = completion(compiler, [node], definition.type)
    key = node.alias.value if node.alias else name
    return Plan(key, node, definition, root, operation, arguments, call, build)


class CompiledWrites:
    """The plans of the mutation documents seen, and the counts of requests served and not."""

    def __init__(self, schema: CrmSchema) -> None:
        self.schema = schema
        self.graphql = schema._schema
        # A plan, or the kind of Unsupported and its reason.
        self.plans: dict[tuple[str, str | None], Plan | tuple[type[Unsupported], str]] = {}
        self.counts: Counter[str] = Counter()

    def plan(self, document: DocumentNode, query: str, operation_name: str | None) -> Plan:
        """The plan of a covered mutation; Unsupported for anything else, decided once per
        document and operation name."""
        key = (query, operation_name)
        plan = self.plans.get(key)
        if plan is None:
            try:
                plan = compile_plan(self.graphql, document, operation_name)
            except Unsupported as unsupported:
                plan = (type(unsupported), str(unsupported))
            if len(self.plans) >= CACHED_PLANS:
                del self.plans[next(iter(self.plans))]
            self.plans[key] = plan
        if isinstance(plan, tuple):
            kind, reason = plan
            raise kind(reason)
        return plan

    def prepare(
        self, plan: Plan, raw_variables: dict[str, Any] | None, context: Context
    ) -> Callable[[], Awaitable[Any]]:
        """The resolver's call, its arguments coerced and converted as the general path does
        them; Unsupported if they do not fit or the caller has no valid token (the general
        path reports both), before anything runs."""
        context.check_token()  # UNAUTHENTICATED: a GraphQLError
        info = ContextInfo(context)
        args, kwargs = plan.call.arguments(plan.arguments(raw_variables or {}), info, self.schema)

        async def run() -> Any:
            result = plan.field.get_result(None, info=info, args=args, kwargs=kwargs)  # type: ignore[arg-type]
            return await result if isawaitable(result) else result

        return run

    async def complete_generally(
        self,
        document: DocumentNode,
        operation_name: str | None,
        raw_variables: dict[str, Any] | None,
        context: Context,
        value: Any,
    ) -> tuple[dict[str, Any] | None, list[GraphQLError] | None]:
        """The general executor's data and errors for a payload the plan could not build (a
        field that raised, a value its type does not serialize, a null where none may be):
        partial data, each error at its own path, from the resolver's value without calling
        the resolver again. Its write has committed: a client shown `data: null` instead
        might send it again."""

        def resolved(resolve: Callable[..., Any], root: Any, info: Any, **args: Any) -> Any:
            return value if info.path.prev is None else resolve(root, info, **args)

        result = await self.schema.execute_document(
            document,
            context_value=context,
            variable_values=raw_variables,
            operation_name=operation_name,
            middleware=[resolved],
        )
        return result.data, result.errors

    def count(self, outcome: str) -> None:
        self.counts[outcome] += 1
