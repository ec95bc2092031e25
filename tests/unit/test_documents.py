"""Each distinct document is parsed and validated once, within the limits, and the caches are
bounded (a client sending ever new documents cannot grow the server's memory)."""

import pytest
from graphql import GraphQLSchema, GraphQLSyntaxError

from crm_graphql.api.limits import QueryLimits, create_limits_rule
from crm_graphql.api.schema import create_schema
from crm_graphql.settings import Settings
from crm_graphql.strawberry_overrides import CACHED_DOCUMENTS, DocumentCache

QUERY = "query Page { leads(first: 5) { totalCount } }"


def graphql_schema(settings: Settings) -> GraphQLSchema:
    return create_schema(settings)._schema


def test_a_document_is_parsed_and_validated_once():
    documents = DocumentCache(max_tokens=100, extra_rules=(), introspection=True)
    schema = graphql_schema(Settings())
    first = documents.parse(QUERY)
    assert documents.parse(QUERY) is first
    assert documents.validate(schema, QUERY) == []
    documents.validate(schema, QUERY)
    assert documents.parse.cache_info().misses == 1  # type: ignore[attr-defined]
    assert documents.validate.cache_info().hits == 1  # type: ignore[attr-defined]
    assert documents.parse.cache_info().maxsize == CACHED_DOCUMENTS  # type: ignore[attr-defined]
    assert documents.validate.cache_info().maxsize == CACHED_DOCUMENTS  # type: ignore[attr-defined]


def test_the_token_limit_applies_when_a_document_is_parsed():
    documents = DocumentCache(max_tokens=10, extra_rules=(), introspection=True)
    with pytest.raises(GraphQLSyntaxError, match="more than 10 tokens"):
        documents.parse(QUERY)


def test_without_introspection_the_schema_cannot_be_read():
    schema = graphql_schema(Settings())
    closed = DocumentCache(max_tokens=100, extra_rules=(), introspection=False)
    open_ = DocumentCache(max_tokens=100, extra_rules=(), introspection=True)
    introspection = "{ __schema { types { name } } }"
    assert open_.validate(schema, introspection) == []
    errors = closed.validate(schema, introspection)
    assert errors
    assert all("introspection has been disabled" in error.message for error in errors)


def test_the_server_s_own_rules_run():
    settings = Settings(max_query_depth=2)
    rule = create_limits_rule(QueryLimits.from_settings(settings))
    documents_without_rules = DocumentCache(max_tokens=1000, extra_rules=(), introspection=True)
    limited = DocumentCache(max_tokens=1000, extra_rules=(rule,), introspection=True)
    schema = graphql_schema(settings)
    deep = "{ leads(first: 1) { edges { node { sale { lead { id } } } } } }"
    assert documents_without_rules.validate(schema, deep) == []
    errors = limited.validate(schema, deep)
    assert errors
    assert "depth" in errors[0].message
