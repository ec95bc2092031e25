"""GraphiQL from the server alone: the page and the pinned assets it loads.

The assets (GraphiQL, React, the explorer plugin) are copied from npm into graphiql/assets/ by
tools/graphiql/refresh.py, which records each file's sha384 in graphiql/manifest.json. The
page loads them from ASSETS_PATH with those hashes as `integrity`, so it renders without
internet access and a browser refuses a file that is not the one the manifest names.
"""

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from string import Template

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route, request_response

GRAPHIQL_DIR = Path(__file__).resolve().parent / "graphiql"
ASSETS_PATH = "/graphiql/assets"
# Every asset's name carries its version (refresh.py), so a URL never changes content.
CACHE_FOREVER = "public, max-age=31536000, immutable"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

DEFAULT_QUERY = """\
# Ctrl+Enter runs. The README's operations work here as written:
# variables in the Variables tab, the token in the Headers tab.

query Viewer {
  viewer { id name role }
  leads(first: 5) {
    totalCount
    edges { node { id stage source businessDomain } }
  }
}
"""


@dataclass(frozen=True)
class Asset:
    file: str
    package: str
    version: str
    sha384: str

    @property
    def url(self) -> str:
        return f"{ASSETS_PATH}/{self.file}"


def load_manifest(directory: Path = GRAPHIQL_DIR) -> dict[str, Asset]:
    """The assets by role (react, graphiql-js, ...), as refresh.py recorded them."""
    entries = json.loads((directory / "manifest.json").read_text())
    return {
        role: Asset(entry["file"], entry["package"], entry["version"], entry["sha384"])
        for role, entry in entries.items()
    }


def sha384(data: bytes) -> str:
    """The Subresource Integrity form: sha384-<base64 digest>."""
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def verify_assets(directory: Path = GRAPHIQL_DIR) -> None:
    """Raise unless every asset the manifest names is there with its recorded sha384 (the
    Docker build and the unit tests check the installed package with it)."""
    for asset in load_manifest(directory).values():
        path = directory / "assets" / asset.file
        if not path.is_file():
            raise FileNotFoundError(f"GraphiQL asset {path} is missing")
        if sha384(path.read_bytes()) != asset.sha384:
            raise ValueError(f"GraphiQL asset {path} does not match its manifest entry")


def script_json(value: object) -> str:
    """JSON that cannot end the <script> element it sits in."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


def graphiql_page(endpoint_path: str, token: str | None) -> str:
    """The GraphiQL page for the endpoint; with `token` (development only), the Headers tab
    starts with it."""
    values = {}
    for role, asset in load_manifest().items():
        key = role.replace("-", "_")
        values[f"{key}_url"] = asset.url
        values[f"{key}_integrity"] = asset.sha384
    config: dict[str, str] = {"path": endpoint_path, "defaultQuery": DEFAULT_QUERY}
    if token is not None:
        config["defaultHeaders"] = json.dumps({"Authorization": f"Bearer {token}"}, indent=2)
    values["config"] = script_json(config)
    return Template((GRAPHIQL_DIR / "index.html").read_text()).substitute(values)


def asset_route() -> Route:
    """GET /graphiql/assets/{file}: the manifest's files and nothing else, cacheable for a
    year, gzipped for clients that accept it (GraphiQL's script is 3.5 MB)."""
    files = {asset.file for asset in load_manifest().values()}

    async def serve(request: Request) -> Response:
        name = request.path_params["file"]
        if name not in files:
            return PlainTextResponse("Not Found", status_code=404)
        path = GRAPHIQL_DIR / "assets" / name
        return FileResponse(
            path, media_type=MEDIA_TYPES[path.suffix], headers={"Cache-Control": CACHE_FOREVER}
        )

    return Route(f"{ASSETS_PATH}/{{file}}", GZipMiddleware(request_response(serve)))
