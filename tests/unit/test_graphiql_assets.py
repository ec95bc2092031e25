"""GraphiQL's vendored assets (crm_graphql/web/graphiql, written by tools/graphiql/refresh.py)
and the page that loads them."""

import json
import re
import shutil
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from crm_graphql.web.ide import GRAPHIQL_DIR, graphiql_page, load_manifest, sha384, verify_assets

ROOT = Path(__file__).resolve().parents[2]


def test_every_asset_matches_its_manifest_entry():
    manifest = load_manifest()
    assert {asset.package for asset in manifest.values()} == {
        "react",
        "react-dom",
        "graphiql",
        "@graphiql/plugin-explorer",
    }
    for asset in manifest.values():
        data = (GRAPHIQL_DIR / "assets" / asset.file).read_bytes()
        assert sha384(data) == asset.sha384, asset.file
        assert asset.version in asset.file  # a new version is a new URL (year-long caching)
    # Nothing in the folder that the manifest does not name.
    files = {path.name for path in (GRAPHIQL_DIR / "assets").iterdir()}
    assert files == {asset.file for asset in manifest.values()}
    verify_assets()


def test_the_manifest_pins_the_versions_of_the_lock_file():
    lock = json.loads((ROOT / "tools" / "graphiql" / "package-lock.json").read_text())
    for asset in load_manifest().values():
        assert lock["packages"][f"node_modules/{asset.package}"]["version"] == asset.version


def test_a_changed_or_missing_asset_is_refused(tmp_path: Path):
    copy = tmp_path / "graphiql"
    shutil.copytree(GRAPHIQL_DIR, copy)
    react = copy / "assets" / load_manifest()["react"].file
    react.write_bytes(react.read_bytes() + b"\n")
    with pytest.raises(ValueError, match="does not match"):
        verify_assets(copy)
    react.unlink()
    with pytest.raises(FileNotFoundError):
        verify_assets(copy)


def test_the_wheel_carries_the_page_and_every_asset():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["crm_graphql"]
    package = ROOT / "crm_graphql"
    needed = [GRAPHIQL_DIR / "index.html", GRAPHIQL_DIR / "manifest.json"]
    needed += [GRAPHIQL_DIR / "assets" / asset.file for asset in load_manifest().values()]
    for path in needed:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative


def script_urls(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def page_config(page: str) -> dict[str, str]:
    config = re.search(
        r'<script id="crm-graphiql-config" type="application/json">(.*?)</script>', page
    )
    assert config is not None
    return json.loads(config[1])


def test_the_page_loads_only_the_server_s_assets_with_their_hashes():
    page = graphiql_page("/graphql", None)
    manifest = load_manifest()
    assert sorted(script_urls(page)) == sorted(asset.url for asset in manifest.values())
    for asset in manifest.values():
        assert f'src="{asset.url}" integrity="{asset.sha384}"' in page or (
            f'href="{asset.url}" integrity="{asset.sha384}"' in page
        )
    assert "https://" not in page
    assert set(page_config(page)) == {"path", "defaultQuery"}  # no headers, no token


def test_a_development_token_starts_in_the_headers_tab_and_cannot_end_the_script():
    token = "a.b</script><script>alert(1)</script>"
    page = graphiql_page("/graphql", token)
    assert "</script><script>alert" not in page
    config = re.search(
        r'<script id="crm-graphiql-config" type="application/json">(.*?)</script>', page
    )
    assert config is not None
    headers = json.loads(json.loads(config[1])["defaultHeaders"])
    assert headers == {"Authorization": f"Bearer {token}"}
