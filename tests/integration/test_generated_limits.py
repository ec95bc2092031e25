"""Generated documents at and just past every abuse limit, many of them built from fragments
spread several times (issue 17): each is accepted exactly when every measure is within its
limit, and refused otherwise with the code of each limit it passes, whichever way the
document spreads its fields over fragments. A document whose fragments are expanded textually
gets the same answer as the one with the fragments.

CRM_FUZZ_OPERATIONS sets how many documents of each family are sent (default: a fifth of it)."""

import asyncio
import os
from dataclasses import dataclass

import httpx
from graphql import DocumentNode, FragmentDefinitionNode, parse, print_ast
from graphql.language import (
    FragmentSpreadNode,
    InlineFragmentNode,
    Lexer,
    NamedTypeNode,
    NameNode,
    Source,
    TokenKind,
    Visitor,
    visit,
)
from hypothesis import given
from hypothesis import strategies as st

from crm_graphql.settings import Settings
from tests.support.fuzz import fuzzing
from tests.support.graphql import token_for
from tests.support.server import ServerProcess

DOCUMENTS = max(int(os.environ.get("CRM_FUZZ_OPERATIONS", "1000")) // 5, 50)
LIMITS = Settings(jwt_secret="x" * 32)
GRAPHQL_RESPONSE = "application/graphql-response+json"
# leads > edges > node, then `hops` times sale > lead: a depth of 4 + 2 * hops (the id too).
LEAD_DEPTH_BASE = 4


@dataclass
class Document:
    """A document and what the limits should say about it."""

    text: str
    depth: int = 1
    aliases: int = 0
    fields: int = 0
    cost: int = 0
    repeats: int = 1  # the most fields of one response name in one selection set
    # Whether to send its expanded form too: not for hundreds of same-named fields, which
    # graphql-core stops comparing when inlined ("Validation aborted.", its own work budget).
    expand: bool = True

    def expected_codes(self) -> set[str]:
        codes = set()
        if tokens(self.text) > LIMITS.max_query_tokens:
            return {"TOKEN_LIMIT_EXCEEDED"}  # parsing stops there: no other measure is taken
        if self.depth > LIMITS.max_query_depth:
            codes.add("DEPTH_LIMIT_EXCEEDED")
        if self.aliases > LIMITS.max_aliases:
            codes.add("ALIAS_LIMIT_EXCEEDED")
        if self.fields > LIMITS.max_query_fields:
            codes.add("FIELD_LIMIT_EXCEEDED")
        if self.cost > LIMITS.max_query_cost:
            codes.add("COST_LIMIT_EXCEEDED")
        if self.repeats > LIMITS.max_field_repeats:
            codes.add("FIELD_REPEAT_LIMIT_EXCEEDED")
        return codes


def tokens(text: str) -> int:
    """Tokens as graphql-core's parser counts them against max_tokens."""
    lexer = Lexer(Source(text))
    count = 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


def spread_over_fragments(selections: list[str], spreads: int, name: str) -> tuple[str, str]:
    """The selections as `spreads` spreads of one fragment on Query (the operation's part, the
    fragment's definition); the caller multiplies the fragment's measures by `spreads`."""
    body = " ".join(selections)
    return " ".join([f"...{name}"] * spreads), f"fragment {name} on Query {{ {body} }}"


@st.composite
def alias_documents(draw: st.DrawFn) -> Document:
    """Aliases at the root and in a fragment spread `spreads` times, around max_aliases."""
    spreads = draw(st.integers(1, 3))
    in_fragment = draw(st.integers(0, (LIMITS.max_aliases + 3) // spreads))
    at_root = draw(st.integers(0, max(LIMITS.max_aliases + 2 - spreads * in_fragment, 0)))
    total = at_root + spreads * in_fragment
    root = [f"r{i}: __typename" for i in range(at_root)]
    if in_fragment:
        part, fragment = spread_over_fragments(
            [f"f{i}: __typename" for i in range(in_fragment)], spreads, "Aliased"
        )
        text = f"query {{ {' '.join(root)} {part} }} {fragment}"
    else:
        text = f"query {{ __typename {' '.join(root)} }}"
    # Each spread repeats the fragment's aliases (which then merge).
    repeats = spreads if in_fragment else 1
    return Document(text, aliases=total, fields=total + (0 if in_fragment else 1), repeats=repeats)


def nested_lead(hops: int, inner: str = "id") -> str:
    for _ in range(hops):
        inner = f"sale {{ lead {{ {inner} }} }}"
    return inner


@st.composite
def depth_documents(draw: st.DrawFn) -> Document:
    """Leads nested through sale > lead around max_query_depth, the inner part in a fragment
    on Lead or not."""
    limit_hops = (LIMITS.max_query_depth - LEAD_DEPTH_BASE) // 2
    outer = draw(st.integers(0, limit_hops + 1))
    inner = draw(st.integers(0, limit_hops + 1 - outer))
    hops = outer + inner
    if inner and draw(st.booleans()):
        body = nested_lead(outer, "...Inner")
        fragment = f" fragment Inner on Lead {{ {nested_lead(inner)} }}"
    else:
        body, fragment = nested_lead(hops), ""
    text = f"query {{ leads(first: 1) {{ edges {{ node {{ {body} }} }} }} }}{fragment}"
    fields = 4 + 2 * hops  # leads, edges, node, 2 per hop, id
    cost = 1 + 1 * (1 + 1 + 2 * hops + 1)  # leads + one page of its selection
    return Document(text, depth=LEAD_DEPTH_BASE + 2 * hops, fields=fields, cost=cost)


@st.composite
def field_documents(draw: st.DrawFn) -> Document:
    """Fragments that each spread the previous one twice, around max_query_fields."""
    levels = draw(st.integers(6, 8))
    width = draw(st.integers(1, 15))
    extra = draw(st.integers(0, 100))
    fragments = [f"fragment D0 on Query {{ {'__typename ' * width}}}"]
    for level in range(1, levels + 1):
        fragments.append(f"fragment D{level} on Query {{ ...D{level - 1} ...D{level - 1} }}")
    text = f"query {{ {'__typename ' * extra} ...D{levels} }} {' '.join(fragments)}"
    typenames = extra + width * 2**levels
    return Document(text, fields=typenames, repeats=typenames, expand=False)


@st.composite
def cost_documents(draw: st.DrawFn) -> Document:
    """The same page of leads asked for again and again (no alias: the copies merge), in a
    fragment spread once or twice or not, around max_query_cost; a page size given by a
    variable counts as the largest page."""
    pages = draw(st.integers(1, LIMITS.max_field_repeats))
    size = draw(st.integers(0, LIMITS.max_page_size) | st.none())
    spreads = draw(st.integers(0, 2))
    argument = "$n" if size is None else str(size)
    selections = [f"leads(first: {argument}) {{ edges {{ node {{ id }} }} }}"] * pages
    counted = LIMITS.max_page_size if size is None else size
    copies = max(spreads, 1)
    if spreads:
        part, fragment = spread_over_fragments(selections, spreads, "Pages")
    else:
        part, fragment = " ".join(selections), ""
    variables = "($n: Int)" if size is None else ""
    text = f"query{variables} {{ {part} }} {fragment}"
    return Document(
        text,
        depth=4,
        fields=copies * pages * 4,
        cost=copies * pages * (1 + counted * 3),
        repeats=copies * pages,
    )


@st.composite
def token_documents(draw: st.DrawFn) -> Document:
    """A long list in an argument, around max_query_tokens (a list, not repeated fields:
    graphql-core gives up comparing thousands of same-named fields, "Validation aborted.")."""
    frame = "{ leads(filter: {stage: []}) { totalCount } }"
    count = draw(st.integers(-6, 2)) + LIMITS.max_query_tokens - tokens(frame)
    text = frame.replace("[]", "[" + " NEW" * count + "]")
    return Document(text, depth=2, fields=2, cost=2)


documents = st.one_of(
    alias_documents(), depth_documents(), field_documents(), cost_documents(), token_documents()
)


def expanded(text: str) -> str | None:
    """The document with each fragment spread replaced by the fragment's selections, or None
    when that text would pass the token limit (it would then be refused for that alone)."""
    document = parse(text)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }

    class Inline(Visitor):
        def leave_fragment_spread(self, node: FragmentSpreadNode, *_: object) -> object:
            fragment = fragments[node.name.value]
            return InlineFragmentNode(
                type_condition=NamedTypeNode(
                    name=NameNode(value=fragment.type_condition.name.value)
                ),
                directives=(),
                selection_set=fragment.selection_set,
            )

    operations = [d for d in document.definitions if not isinstance(d, FragmentDefinitionNode)]
    # Fragments spread in fragments: inline until none is left (the families nest them).
    text = print_ast(DocumentNode(definitions=tuple(operations)))
    while "..." in text and any(f"...{name}" in text for name in fragments):
        if tokens(text) > LIMITS.max_query_tokens:
            return None
        text = print_ast(visit(parse(text), Inline()))
    return text if tokens(text) <= LIMITS.max_query_tokens else None


def send_documents(url: str) -> list[str]:
    problems: list[str] = []

    @fuzzing(DOCUMENTS)
    @given(document=documents)
    def check(document: Document) -> None:
        expected = document.expected_codes()
        for text in (document.text, expanded(document.text) if document.expand else None):
            if text is None:
                continue
            response = http.post(
                "/graphql",
                json={"query": text, "variables": {"n": 1}},
                headers={"accept": GRAPHQL_RESPONSE},
            )
            body = response.json()
            codes = {(e.get("extensions") or {}).get("code") for e in body.get("errors", [])}
            if expected and (response.status_code != 400 or codes != expected):
                problems.append(
                    f"expected {expected}, got {response.status_code} {body} for {text}"
                )
            if not expected and (response.status_code != 200 or body.get("errors")):
                problems.append(f"expected data, got {response.status_code} {body} for {text}")

    admin = {"Authorization": f"Bearer {token_for('admin')}"}
    with httpx.Client(base_url=url, timeout=30, headers=admin) as http:
        check()
    return problems


async def test_documents_near_every_limit_are_refused_exactly_past_it(server: ServerProcess):
    assert await asyncio.to_thread(send_documents, server.url) == []
