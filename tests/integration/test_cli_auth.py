"""The developer's side of tokens: `crm-graphql token`, the development secret and token the
embedded setup prints, and the refusal to run on an external database without a secret."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from crm_graphql.domain.access import Actor, Role
from crm_graphql.tokens import TokenCodec
from tests.support.graphql import TEST_JWT_SECRET, TEST_TOKENS
from tests.support.server import ServerProcess

CONFIGURATION = ("CRM_DATABASE_URL", "POSTGRES_HOST", "CRM_JWT_SECRET", "CRM_DATA_DIR")


def environment(**values: str) -> dict[str, str]:
    """This process's environment without any crm configuration, plus `values`."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURATION}
    return env | values


def crm_graphql(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crm_graphql", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_token_prints_a_token_the_server_accepts():
    before = datetime.now(UTC).replace(microsecond=0)
    done = crm_graphql(
        "token",
        "--sub",
        "alice",
        "--name",
        "Alice Doe",
        "--role",
        "sales",
        "--ttl",
        "30m",
        env=environment(CRM_JWT_SECRET=TEST_JWT_SECRET),
    )
    assert done.returncode == 0, done.stderr
    authentication = TEST_TOKENS.verify(done.stdout.strip())
    assert authentication.actor == Actor("alice", "Alice Doe", Role.SALES)
    lifetime = authentication.expires_at - before
    assert timedelta(minutes=29) < lifetime <= timedelta(minutes=31)


def test_token_refuses_an_unknown_role_and_a_bad_lifetime():
    env = environment(CRM_JWT_SECRET=TEST_JWT_SECRET)
    role = crm_graphql("token", "--sub", "alice", "--role", "root", env=env)
    assert role.returncode == 2
    assert "invalid choice: 'root'" in role.stderr
    ttl = crm_graphql("token", "--sub", "alice", "--role", "admin", "--ttl", "8 weeks", env=env)
    assert ttl.returncode == 2
    assert "not a lifetime like 30m, 8h or 7d" in ttl.stderr


def test_token_without_a_database_uses_the_development_secret(tmp_path: Path):
    env = environment(CRM_DATA_DIR=str(tmp_path / "data"))
    done = crm_graphql("token", "--sub", "bob", "--role", "admin", env=env)
    assert done.returncode == 0, done.stderr
    secret = (tmp_path / "data" / "jwt-secret").read_text().strip()
    codec = TokenCodec(secret, "crm-graphql", "crm-graphql")
    assert codec.verify(done.stdout.strip()).actor == Actor("bob", "bob", Role.ADMIN)


def test_serve_on_an_external_database_without_a_secret_refuses_in_one_line(database_url: str):
    done = crm_graphql("serve", "--no-migrate", env=environment(CRM_DATABASE_URL=database_url))
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("CRM_JWT_SECRET is not set")


def test_a_too_short_secret_is_refused_in_one_line(database_url: str):
    env = environment(CRM_DATABASE_URL=database_url, CRM_JWT_SECRET="short")
    done = crm_graphql("serve", "--no-migrate", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "Invalid configuration: jwt_secret: Value error, CRM_JWT_SECRET must be at least 32 "
        "bytes long"
    ]


@pytest.fixture
def private_folder() -> Iterator[Path]:
    """A folder outside pytest's: a concurrent pytest session resets /tmp/pytest-of-<user> to
    0700, which would lock the embedded PostgreSQL's system user out of its data."""
    folder = Path(tempfile.mkdtemp(prefix="crm-test-dev-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_embedded_setup_prints_a_manager_token_signed_with_its_kept_secret(
    private_folder: Path, tmp_path: Path
):
    data_dir = private_folder / "data"
    server = ServerProcess(environment(CRM_DATA_DIR=str(data_dir)), tmp_path / "serve.log")
    server.start(timeout=120)
    try:
        output = server.log()
        token = re.search(r"Development token \(role manager, valid 24h\): (\S+)", output)
        assert token, output
        assert f'Headers tab): {{"Authorization": "Bearer {token[1]}"}}' in output
        viewer = httpx.post(
            f"{server.url}/graphql",
            json={"query": "{ viewer { id role } }"},
            headers={"Authorization": f"Bearer {token[1]}"},
            timeout=10,
        ).json()
        assert viewer["data"] == {"viewer": {"id": "developer", "role": "MANAGER"}}
        # GraphiQL's Headers tab starts with that token.
        page = httpx.get(f"{server.url}/graphql", headers={"accept": "text/html"}, timeout=10)
        assert f'\\"Bearer {token[1]}\\"' in page.text
    finally:
        stop_like_ctrl_c(server)
    # The secret stays in the data folder, so tokens outlive a restart (the next start reads it:
    # tests/unit/test_tokens.py).
    secret = (data_dir / "jwt-secret").read_text().strip()
    assert TokenCodec(secret, "crm-graphql", "crm-graphql").verify(token[1])
    assert (data_dir / "jwt-secret").stat().st_mode & 0o777 == 0o600
    assert not (data_dir / "pgdata" / "postmaster.pid").exists(), "PostgreSQL still running"


def stop_like_ctrl_c(server: ServerProcess) -> None:
    # Uvicorn re-raises SIGTERM after shutting down, which skips the atexit hook that stops the
    # embedded PostgreSQL; Ctrl+C (SIGINT) lets it run.
    assert server.process is not None
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(60)
    finally:
        server.stop()
