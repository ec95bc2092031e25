"""A real `crm-graphql serve` process, the command the Docker image runs."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *args: str,
        unset: Iterable[str] = (),
        cwd: Path | None = None,
    ) -> None:
        """`env` is added to this process's environment, without the variables in `unset`."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        inherited = {k: v for k, v in os.environ.items() if k not in set(unset)}
        self.env = {**inherited, **env}
        self.args = args
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> "ServerProcess":
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crm_graphql", "serve", "--port", str(self.port), *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not become ready:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.process, "not started"
        return self.process.pid

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def api_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a test API server: its database, the test token secret, statement
    counts in responses, and any further CRM_* settings."""
    from tests.support.graphql import TEST_JWT_SECRET

    return {
        "CRM_DATABASE_URL": database_url,
        "CRM_EXPOSE_SQL_COUNT": "true",
        "CRM_JWT_SECRET": TEST_JWT_SECRET,
        **settings,
    }


@contextmanager
def api_server(database_url: str, log_dir: Path, **settings: str) -> Iterator[ServerProcess]:
    """A test API server (`api_env`) for the length of the block, logging to log_dir."""
    process = ServerProcess(api_env(database_url, **settings), log_dir / "server.log").start()
    try:
        yield process
    finally:
        process.stop()
