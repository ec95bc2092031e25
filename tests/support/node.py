"""Node.js projects of the test suite (pinned by their lock files), installed on first use."""

import shutil
import subprocess
from pathlib import Path

import pytest


def node_project(folder: Path, marker: str) -> str:
    """The `node` executable, once `folder`'s packages are installed (`npm ci` when its
    node_modules lacks `marker`). Skips the test where Node.js is absent; CI has it."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"node and npm are needed for {folder.name}")
    if not (folder / "node_modules" / marker).exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder, check=True)
    return node
