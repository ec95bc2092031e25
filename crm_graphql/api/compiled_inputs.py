"""A compiled write's input variable, coerced by a function made once for its type.

graphql-core's `get_variable_values` and `get_argument_values` walk the operation's variable
definitions, the type's predicates and the argument nodes again on every request: about
3 % of the main flow's server CPU (docs/benchmarks.md). A covered mutation takes exactly one
argument, a non-null variable of its input type (compiled_writes.input_variable), so its
coercion is this type's alone: `input_coercer` turns the type into nested closures that do
what graphql-core's `coerce_input_value` does for it, the type decided once.

Only a value graphql-core accepts is coerced here; anything it would refuse raises
Unsupported, and the request takes the general path, whose errors say what was wrong.
`tests/unit/test_compiled_inputs.py` compares both on generated values of every covered
input type, valid and not.
"""

from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    Undefined,
    is_leaf_type,
    is_required_input_field,
)
from graphql.language.parser import MAX_NESTING_DEPTH
from graphql.pyutils import is_iterable
from graphql.utilities.coerce_input_value import coerce_default_value

from crm_graphql.api.compiled_reads import Unsupported

# A raw value to its coerced value, or Undefined where graphql-core would refuse it.
Coerce = Callable[[Any], Any]


def input_coercer(type_: GraphQLInputType, within: tuple[str, ...] = ()) -> Coerce:
    """`coerce_input_value(value, type_)` for this type, as closures made once (`within`: the
    input objects it is nested in). Unsupported for a recursive input type or one nested so
    deep that graphql-core's check on a value's nesting could refuse it, and a one-of input."""
    if len(within) >= MAX_NESTING_DEPTH // 2:  # lists count too: stay well inside
        raise Unsupported("input nesting")
    # A null (or absent) value first, as graphql-core decides it: refused where the type is
    # non-null, else null; any other value goes to its kind's coercion.
    if isinstance(type_, GraphQLNonNull):
        inner, null = _value_coercer(type_.of_type, within), Undefined
    else:
        inner, null = _value_coercer(type_, within), None

    def value_or_null(value: Any) -> Any:
        return null if value is None or value is Undefined else inner(value)

    return value_or_null


def _value_coercer(type_: GraphQLInputType, within: tuple[str, ...]) -> Coerce:
    """The coercion of a value that is not null, by the type's kind."""
    if isinstance(type_, GraphQLList):
        return _list_coercer(input_coercer(type_.of_type, (*within, "[]")))
    if isinstance(type_, GraphQLInputObjectType):
        if type_.name in within:
            raise Unsupported("recursive input")
        return _object_coercer(type_, (*within, type_.name))
    if not is_leaf_type(type_):
        raise Unsupported("input type")
    leaf = type_.coerce_input_value

    def leaf_value(value: Any) -> Any:
        try:
            return leaf(value)
        except Exception:  # as graphql-core: refused
            return Undefined

    return leaf_value


def _list_coercer(item: Coerce) -> Coerce:
    def list_value(value: Any) -> Any:
        if not is_iterable(value):  # a non-list value is a list of one
            coerced = item(value)
            return Undefined if coerced is Undefined else [coerced]
        items = []
        for entry in value:
            coerced = item(entry)
            if coerced is Undefined:
                return Undefined
            items.append(coerced)
        return items

    return list_value


def _object_coercer(type_: GraphQLInputObjectType, within: tuple[str, ...]) -> Coerce:
    if type_.is_one_of:
        raise Unsupported("one-of input")
    fields = type_.fields
    plan = [
        (
            name,
            field.out_name or name,
            input_coercer(field.type, within),
            is_required_input_field(field),
            field,
        )
        for name, field in fields.items()
    ]
    out_type = type_.out_type

    def object_value(value: Any) -> Any:
        if not isinstance(value, dict):
            return Undefined
        for name, field_value in value.items():
            if field_value is not Undefined and name not in fields:
                return Undefined
        coerced: dict[str, Any] = {}
        for name, out_name, coerce, required, field in plan:
            field_value = value.get(name, Undefined)
            if field_value is Undefined:
                if required:
                    return Undefined
                default = coerce_default_value(field)
                if default is not Undefined:
                    coerced[out_name] = default
                continue
            coerced_field = coerce(field_value)
            if coerced_field is Undefined:
                return Undefined
            coerced[out_name] = coerced_field
        return out_type(coerced)

    return object_value


def argument_coercer(
    variable: str, argument_name: str, argument: GraphQLArgument
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The root field's arguments from the request's variables, for a field whose one
    argument is the non-null variable `variable` of the argument's own type: what
    `get_argument_values(field, node, get_variable_values(...))` gives, or Unsupported."""
    coerce = input_coercer(argument.type)
    out_name = argument.out_name or argument_name

    def arguments(raw_variables: dict[str, Any]) -> dict[str, Any]:
        coerced = coerce(raw_variables.get(variable, Undefined))
        if coerced is Undefined or coerced is None:
            raise Unsupported("variables")
        return {out_name: coerced}

    return arguments
