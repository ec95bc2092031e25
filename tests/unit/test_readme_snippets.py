"""The README's client snippets are the files the client tier (tests/clients) runs."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNIPPETS = {
    "tests/clients/snippets/graphql-ws.mjs": "js",
    "tests/clients/snippets/apollo.mjs": "js",
    "tests/clients/snippets/urql.mjs": "js",
    "tests/clients/codegen.yml": "yaml",
}


@pytest.mark.parametrize("path", SNIPPETS)
def test_the_readme_shows_the_snippet_the_client_tier_runs(path: str):
    snippet = (ROOT / path).read_text()
    readme = (ROOT / "README.md").read_text()
    assert f"```{SNIPPETS[path]}\n{snippet}```\n" in readme
    assert f"`{path}`" in readme  # and says where it lives
