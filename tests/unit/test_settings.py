"""Settings from the environment (prefix CRM_) and from a .env file."""

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from crm_graphql.settings import Settings

DATABASE_VARIABLES = [
    "CRM_DATABASE_URL",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "CRM_TRANSFER_THRESHOLD",
]


@pytest.fixture(autouse=True)
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No database variables, and a working directory without a .env file."""
    for name in DATABASE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_nothing_configured_means_embedded():
    assert Settings().database_url is None


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://crm@db.example:5433/crm",
        "postgres://crm@db.example:5433/crm",
        "postgresql+psycopg://crm@db.example:5433/crm",
        "postgresql+asyncpg://crm@db.example:5433/crm",
    ],
)
def test_crm_database_url_is_used_with_the_asyncpg_driver(
    monkeypatch: pytest.MonkeyPatch, given: str
):
    monkeypatch.setenv("CRM_DATABASE_URL", given)
    monkeypatch.setenv("POSTGRES_HOST", "ignored.example")
    assert Settings().database_url == "postgresql+asyncpg://crm@db.example:5433/crm"


def test_postgres_variables_compose_a_url_with_quoted_credentials(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("POSTGRES_HOST", "db.example")
    monkeypatch.setenv("POSTGRES_PORT", "6543")
    monkeypatch.setenv("POSTGRES_USER", "crm user@x")
    monkeypatch.setenv("POSTGRES_PASSWORD", "p@ss:w/rd%?#")
    monkeypatch.setenv("POSTGRES_DB", "crm_prod")
    url = make_url(Settings().database_url or "")
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port, url.database) == ("db.example", 6543, "crm_prod")
    assert url.username == "crm user@x"
    assert url.password == "p@ss:w/rd%?#"


def test_postgres_host_alone_uses_the_defaults(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POSTGRES_HOST", "db.example")
    assert Settings().database_url == "postgresql+asyncpg://postgres@db.example:5432/crm"


def test_transfer_threshold_defaults_to_0_6_and_is_a_setting(monkeypatch: pytest.MonkeyPatch):
    assert Settings().transfer_threshold == 0.6
    monkeypatch.setenv("CRM_TRANSFER_THRESHOLD", "0.75")
    assert Settings().transfer_threshold == 0.75


@pytest.mark.parametrize("value", ["1.5", "-0.1", "high"])
def test_a_threshold_outside_0_to_1_is_refused(monkeypatch: pytest.MonkeyPatch, value: str):
    monkeypatch.setenv("CRM_TRANSFER_THRESHOLD", value)
    with pytest.raises(ValidationError, match="transfer_threshold"):
        Settings()


def test_a_dot_env_file_is_read(tmp_path: Path):
    (tmp_path / ".env").write_text(
        "CRM_TRANSFER_THRESHOLD=0.7\nPOSTGRES_HOST=db.example\nPOSTGRES_PASSWORD=s3cret\n"
    )
    settings = Settings()
    assert settings.transfer_threshold == 0.7
    assert settings.database_url == "postgresql+asyncpg://postgres:s3cret@db.example:5432/crm"


def test_the_environment_wins_over_dot_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / ".env").write_text("CRM_DATABASE_URL=postgresql://from-file/crm\n")
    monkeypatch.setenv("CRM_DATABASE_URL", "postgresql://from-env/crm")
    assert Settings().database_url == "postgresql+asyncpg://from-env/crm"


def test_cors_origins_are_exact_origins_separated_by_commas(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRM_CORS_ORIGINS", "https://App.example.com:443, http://localhost:5173")
    assert Settings().cors_origins == ("http://localhost:5173", "https://app.example.com")
    for wrong in ("*", "https://app.example.com/path", "app.example.com", "null"):
        monkeypatch.setenv("CRM_CORS_ORIGINS", wrong)
        with pytest.raises(ValidationError, match="exact origins"):
            Settings()


def test_a_blank_trusted_documents_setting_means_none(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRM_TRUSTED_DOCUMENTS", "")
    assert Settings().trusted_documents is None
