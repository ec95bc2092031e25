"""GraphiQL over HTTP: the page and its assets come from the server, cacheable and matching
the hashes the page names. (tests/integration/test_browser.py renders it in Chromium.)"""

import re

import httpx

from crm_graphql.web.ide import CACHE_FOREVER, load_manifest, sha384
from tests.support.server import ServerProcess


def test_the_page_names_only_assets_the_server_serves_as_they_are_pinned(server: ServerProcess):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        page = http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        loaded = re.findall(r'(?:src|href)="([^"]+)" integrity="([^"]+)"', page.text)
        assert len(loaded) == len(load_manifest()) == 6
        for url, integrity in loaded:
            assert url.startswith("/graphiql/assets/")
            asset = http.get(url, headers={"accept-encoding": "gzip"})
            assert asset.status_code == 200, url
            assert sha384(asset.content) == integrity, url
            assert asset.headers["cache-control"] == CACHE_FOREVER
            assert asset.headers["content-type"].split(";")[0] in ("text/javascript", "text/css")
            if len(asset.content) > 100_000:
                assert asset.headers["content-encoding"] == "gzip", url


def test_only_the_manifest_s_files_are_served(server: ServerProcess):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for path in ("missing.js", "..%2Fmanifest.json", "..%2F..%2Fide.py", "manifest.json"):
            assert http.get(f"/graphiql/assets/{path}").status_code == 404, path
