"""Parsing and validation, once per distinct document.

`DocumentCache` does what Strawberry's MaxTokensLimiter, AddValidationRules,
DisableIntrospection, ParserCache and ValidationCache do together. Queries and mutations use
it directly (`CrmSchema.execute`); subscriptions, which keep Strawberry's extension runner,
through the `CachedDocuments` extension (docs/benchmarks.md)."""

from collections.abc import Callable, Iterator
from functools import lru_cache

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, parse, validate
from graphql.validation import NoSchemaIntrospectionCustomRule, specified_rules
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

# Distinct documents kept; each costs some kilobytes. Clients send a fixed set of operations.
CACHED_DOCUMENTS = 1024


class DocumentCache:
    """Per schema: parse under the token limit, validate with our rules (the abuse limits),
    then the specification's; both remembered (LRU, bounded) for the documents seen most
    recently."""

    def __init__(
        self,
        max_tokens: int,
        extra_rules: tuple[type[ASTValidationRule], ...],
        introspection: bool,
        hide_suggestions: bool = False,
    ) -> None:
        # Strawberry's own rules as its validate_document adds them, which cannot hide
        # suggestions ("Did you mean ...?" for types, arguments, input fields, enum values).
        rules = (*specified_rules, MaybeNullValidationRule, OneOfInputValidationRule)
        if not introspection:
            rules = (*rules, NoSchemaIntrospectionCustomRule)

        def parse_limited(query: str) -> DocumentNode:
            return parse(query, max_tokens=max_tokens)

        self.parse: Callable[[str], DocumentNode] = lru_cache(CACHED_DOCUMENTS)(parse_limited)

        def validate_query(schema: GraphQLSchema, query: str) -> list[GraphQLError]:
            document = self.parse(query)
            # Ours first, alone: they take time linear in the document, while some of the
            # specification's (OverlappingFieldsCanBeMerged) take quadratic time in the
            # fields they compare; a document over a limit is refused before those run.
            if extra_rules and (errors := validate(schema, document, extra_rules)):
                return errors
            return validate(schema, document, rules, hide_suggestions=hide_suggestions)

        # Keyed by the query text, whose hash Python keeps: a DocumentNode's hash walks the
        # whole tree on every lookup.
        self.validate: Callable[[GraphQLSchema, str], list[GraphQLError]] = lru_cache(
            CACHED_DOCUMENTS
        )(validate_query)

    def extension(self) -> "CachedDocuments":
        return CachedDocuments(self)


class CachedDocuments(SchemaExtension):
    def __init__(self, documents: DocumentCache) -> None:
        self.documents = documents

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.graphql_document = self.documents.parse(context.query or "")
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        context.pre_execution_errors = self.documents.validate(
            context.schema._schema, context.query or ""
        )
        yield
