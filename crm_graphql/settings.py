"""Configuration from the environment (prefix CRM_) and an optional .env file."""

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from pydantic import AliasChoices, Field, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_", env_file=".env", extra="ignore")

    env: Environment = Environment.DEVELOPMENT

    # Database: CRM_DATABASE_URL, else POSTGRES_* (as the postgres image names them), else embedded.
    database_url_override: str | None = Field(
        default=None, validation_alias=AliasChoices("CRM_DATABASE_URL")
    )
    postgres_host: str | None = Field(default=None, validation_alias="POSTGRES_HOST")
    postgres_port: int = Field(default=5432, validation_alias="POSTGRES_PORT")
    postgres_user: str = Field(default="postgres", validation_alias="POSTGRES_USER")
    postgres_password: str = Field(default="", validation_alias="POSTGRES_PASSWORD")
    postgres_db: str = Field(default="crm", validation_alias="POSTGRES_DB")
    data_dir: Path = Path(".crm-data")
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1)
    log_level: str = "info"

    # Adds extensions.sqlStatements to every response: for tests and benchmarks, not production.
    expose_sql_count: bool = False

    transfer_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    max_page_size: int = Field(default=100, ge=1)
    default_page_size: int = Field(default=20, ge=1)
    # pipelineStats: the longest window one request may cover (two years, a leap day included).
    analytics_max_window_days: int = Field(default=731, ge=1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def database_url(self) -> str | None:
        """The SQLAlchemy URL of an external server, or None to run an embedded one."""
        if self.database_url_override:
            return to_asyncpg_url(self.database_url_override)
        if self.postgres_host:
            password = ""
            if self.postgres_password:
                password = ":" + quote(self.postgres_password, safe="")
            return (
                f"postgresql+asyncpg://{quote(self.postgres_user, safe='')}{password}"
                f"@{self.postgres_host}:{self.postgres_port}/{self.postgres_db}"
            )
        return None


def to_asyncpg_url(url: str) -> str:
    """Accept the usual postgres:// and postgresql:// spellings as well as SQLAlchemy's."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
