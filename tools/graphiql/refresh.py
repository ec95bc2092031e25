#!/usr/bin/env python3
"""Copy the pinned GraphiQL assets from npm into the package: crm_graphql/web/graphiql/.

    .venv/bin/python tools/graphiql/refresh.py

`npm ci` installs exactly what package-lock.json pins and checks every package tarball
against the lock's integrity hash (sha512), so only the published files arrive. Each copied
file gets its version in its name (the server lets browsers cache assets for a year, so a
new version must be a new URL) and its sha384 in manifest.json, which the page uses as the
script's `integrity` and tests/unit/test_graphiql_assets.py checks against the files.

To move to other versions: edit package.json, `npm install --package-lock-only` here, run
this script, and open GraphiQL to see that it renders (tests/integration/test_browser.py).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from crm_graphql.web.ide import GRAPHIQL_DIR as TARGET
from crm_graphql.web.ide import sha384, verify_assets

HERE = Path(__file__).resolve().parent
ASSETS = TARGET / "assets"

# role: (npm package, file in the package, served name with {version} filled in)
FILES = {
    "react": ("react", "umd/react.production.min.js", "react-{version}.production.min.js"),
    "react-dom": (
        "react-dom",
        "umd/react-dom.production.min.js",
        "react-dom-{version}.production.min.js",
    ),
    "graphiql-js": ("graphiql", "graphiql.min.js", "graphiql-{version}.min.js"),
    "graphiql-css": ("graphiql", "graphiql.min.css", "graphiql-{version}.min.css"),
    "explorer-js": (
        "@graphiql/plugin-explorer",
        "dist/index.umd.js",
        "plugin-explorer-{version}.umd.js",
    ),
    "explorer-css": (
        "@graphiql/plugin-explorer",
        "dist/style.css",
        "plugin-explorer-{version}.css",
    ),
}


def main() -> int:
    npm = shutil.which("npm")
    if npm is None:
        print("npm is needed (Node.js 20 or newer).", file=sys.stderr)
        return 2
    # --ignore-scripts: nothing from the packages runs here; we only copy files.
    subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=HERE,
        check=True,
    )
    modules = HERE / "node_modules"
    shutil.rmtree(ASSETS, ignore_errors=True)
    ASSETS.mkdir(parents=True)
    manifest = {}
    for role, (package, source, pattern) in FILES.items():
        version = json.loads((modules / package / "package.json").read_text())["version"]
        data = (modules / package / source).read_bytes()
        name = pattern.format(version=version)
        (ASSETS / name).write_bytes(data)
        manifest[role] = {
            "file": name,
            "package": package,
            "version": version,
            "source": source,
            "sha384": sha384(data),
        }
        print(f"{name}: {package}@{version} {source}")
    (TARGET / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    verify_assets()
    return 0


if __name__ == "__main__":
    sys.exit(main())
