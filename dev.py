#!/usr/bin/env python3
"""The one entry point for a fresh clone; needs only Python 3.11+.

    python3 dev.py serve [crm-graphql serve options]   # embedded PostgreSQL unless configured
    python3 dev.py test [pytest options]               # the whole suite

Both create .venv on first use (and again when the lock files change) from the pinned
requirements-dev.lock, then run inside it.
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".crm-installed"
INPUTS = ("pyproject.toml", "requirements-dev.lock")


def fingerprint() -> str:
    digest = hashlib.sha256()
    for name in INPUTS:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment() -> None:
    wanted = fingerprint()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        print("Creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("Installing pinned dependencies into .venv ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-r", str(ROOT / "requirements-dev.lock")], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(wanted)


def main() -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        print("crm_graphql needs Python 3.11 or newer.", file=sys.stderr)
        return 2
    command, *rest = sys.argv[1:] or ["help"]
    commands = {
        "serve": [str(PYTHON), "-m", "crm_graphql", "serve", *rest],
        "test": [str(PYTHON), "-m", "pytest", *rest],
        "setup": None,
    }
    if command not in commands:
        print(__doc__)
        return 0 if command == "help" else 2
    ensure_environment()
    argv = commands[command]
    if argv is None:
        return 0
    os.chdir(ROOT)
    if os.name == "nt":
        return subprocess.call(argv)
    os.execv(argv[0], argv)  # the server gets signals (Ctrl+C) directly
    return 0


if __name__ == "__main__":
    sys.exit(main())
