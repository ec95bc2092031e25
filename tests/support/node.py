"""Node.js projects of the test suite (pinned by their lock files), installed on first use."""

import shutil
import subprocess
from pathlib import Path

import pytest


class NodeMissing(RuntimeError):
    """Node.js or npm is not installed."""


def installed_node_project(folder: Path, marker: str) -> str:
    """The `node` executable, once `folder`'s packages are installed (`npm ci` when its
    node_modules lacks `marker`); NodeMissing where Node.js is absent."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        raise NodeMissing(f"node and npm are needed for {folder.name}")
    if not (folder / "node_modules" / marker).exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder, check=True)
    return node


def node_project(folder: Path, marker: str) -> str:
    """As installed_node_project, but skips the test where Node.js is absent; CI has it."""
    try:
        return installed_node_project(folder, marker)
    except NodeMissing as missing:
        pytest.skip(str(missing))
