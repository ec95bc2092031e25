"""Configuration from the environment (prefix CRM_) and an optional .env file."""

from collections.abc import Iterable
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

import phonenumbers
from pydantic import AliasChoices, Field, SecretStr, computed_field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from strawberry.http.websocket_origin import normalize_allowed_origins

from crm_graphql.domain.scoring import ScorerKind

MIN_SECRET_BYTES = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LlmApiStyle(StrEnum):
    OPENAI = "openai"  # {base}/chat/completions, Authorization: Bearer
    AZURE = "azure"  # {base}/openai/deployments/{model}/chat/completions, api-key header


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
    # Connections kept open per process, in each of its two pools (SQLAlchemy's and the
    # driver's, db/pool.py). SQLAlchemy's overflow connections are closed as soon as they are
    # returned, so a steady load above the pool size opens a connection (a PostgreSQL backend,
    # the driver's setup) for every request beyond it: keep the pool as large as the load.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1)
    log_level: str = "info"
    # One line per request: `text` for a terminal, `json` for a log collector.
    log_format: Literal["text", "json"] = "text"
    # SIGTERM: open WebSockets are closed (1001) and in-flight requests get this long to finish.
    shutdown_timeout_s: float = Field(default=30.0, gt=0)

    # Faults: how long to wait for a connection, for one statement, for a free pooled connection.
    db_connect_timeout_s: float = Field(default=5.0, gt=0)
    statement_timeout_ms: int = Field(default=5000, ge=1)
    db_pool_timeout_s: float = Field(default=5.0, gt=0)

    # Abuse limits: each request error names the setting it hit.
    max_query_depth: int = Field(default=10, ge=1)
    max_aliases: int = Field(default=15, ge=0)
    max_query_tokens: int = Field(default=2000, ge=1)
    # Fields once fragments are expanded: as many as a document of max_query_tokens without
    # fragments can name; fragments spread within fragments can multiply them far beyond.
    max_query_fields: int = Field(default=2000, ge=1)
    # Fields of one response name in one selection set (fragments expanded): graphql-core
    # compares them pairwise, so 300 of them cost it a second or more.
    max_field_repeats: int = Field(default=30, ge=1)
    # A field costs 1; a page of `first: N` costs N times its selection (see docs/operations.md).
    max_query_cost: int = Field(default=5000, ge=1)
    max_body_bytes: int = Field(default=262_144, ge=1024)
    batching_enabled: bool = False
    max_batch_operations: int = Field(default=10, ge=1)

    # Browser pages on other origins that may call the API and open its WebSocket: exact
    # origins, comma-separated (https://app.example.com,https://admin.example.com). Development
    # also allows http://localhost:* and http://127.0.0.1:* (docs/operations.md).
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    # Persisted queries (docs/operations.md): characters of documents kept for Apollo's
    # automatic persisted queries; a persisted-documents.json manifest (hash to document, as
    # GraphQL Code Generator writes it) which, when set, is all the server runs.
    apq_cache_chars: int = Field(default=4_000_000, ge=0)
    trusted_documents: Path | None = None

    # Adds extensions.sqlStatements to every HTTP response: for tests and benchmarks only.
    expose_sql_count: bool = False
    # Queries the read compiler covers (api/compiled_reads.py) skip the general executor: off,
    # every operation runs on it. The responses are the same bytes either way.
    compiled_reads: bool = True
    # Mutations the write compiler covers (api/compiled_writes.py) skip the general executor:
    # off, every mutation runs on it. The responses are the same bytes either way.
    compiled_writes: bool = True

    # Tokens: HS256 with this secret (at least 32 bytes). Unset with the embedded database, the
    # server keeps a generated one in data_dir; with an external database it must be set.
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "crm-graphql"
    jwt_audience: str = "crm-graphql"
    jwt_leeway: int = Field(default=30, ge=0, le=300, description="clock skew allowed, seconds")
    # Development only: a token GraphiQL's Headers tab starts with. `serve` sets it to the
    # development token it prints (embedded database); production never serves GraphiQL.
    graphiql_token: SecretStr | None = None

    transfer_threshold: float = Field(default=0.6, ge=0.0, le=1.0)

    # Scoring: which scorer analyzeLead uses when none is asked for (see docs/scoring.md).
    scorer: ScorerKind = ScorerKind.HEURISTIC
    # Any OpenAI-compatible chat completions API: OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp.
    llm_base_url: str | None = None  # e.g. https://api.openai.com/v1, http://127.0.0.1:11434/v1
    llm_model: str = "gpt-4o-mini"  # with Azure: the deployment name
    llm_api_key: SecretStr | None = None
    llm_api_style: LlmApiStyle = LlmApiStyle.OPENAI
    llm_azure_api_version: str = "2024-10-21"
    llm_timeout_s: float = Field(default=10.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=5)
    llm_notes_budget_chars: int = Field(default=4000, ge=0)
    max_page_size: int = Field(default=100, ge=1)
    default_page_size: int = Field(default=20, ge=1)
    # pipelineStats: the longest window one request may cover (two years, a leap day included).
    analytics_max_window_days: int = Field(default=731, ge=1)

    # Subscriptions: events a subscriber may have waiting before it is cut off as too slow; how
    # often the LISTEN connection proves it is alive; the longest wait between reconnects.
    subscriber_queue_size: int = Field(default=256, ge=1)
    listen_health_interval: float = Field(default=10.0, gt=0)
    listen_reconnect_max_backoff: float = Field(default=30.0, gt=0)
    # permessage-deflate on WebSockets: off, because compressing costs every socket for every
    # message, 45 % more server CPU per subscription delivery (docs/subscriptions.md).
    ws_per_message_deflate: bool = False

    # Webhooks (docs/webhooks.md). In production a webhook URL must be https and reach public
    # addresses only, except on the hosts listed here (comma-separated names, e.g. a receiver on
    # the private network). Every process delivers; they share the work through row claims.
    webhook_allowed_hosts: str = ""
    webhook_poll_interval_s: float = Field(default=1.0, gt=0)
    webhook_concurrency_per_endpoint: int = Field(default=4, ge=1)
    webhook_connect_timeout_s: float = Field(default=5.0, gt=0)
    webhook_read_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_first_delay_s: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=14, ge=1)
    # After rotateWebhookSecret the previous secret signs too for this long.
    webhook_secret_grace_s: float = Field(default=86_400.0, ge=0)

    # Region (ISO 3166 code such as DE or US) assumed for phone numbers given without +country.
    # Unset: every number must carry its +country code, since guessing would store wrong numbers.
    default_phone_region: str | None = None

    @field_validator("default_phone_region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region code phonenumbers knows (e.g. DE, US)")
        return region

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _exact_origins(cls, value: str | Iterable[str]) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        items = [item.strip() for item in items if item.strip()]
        try:
            if "*" in items:  # the point is a list: each origin a front end someone vouches for
                raise ValueError
            # As browsers send the Origin header: lower-case, no default port.
            return tuple(sorted(normalize_allowed_origins(items)))
        except ValueError:
            raise ValueError(
                "CRM_CORS_ORIGINS takes exact origins, comma-separated, each scheme://host[:port] "
                "(e.g. https://app.example.com): no '*', no path"
            ) from None

    @field_validator("trusted_documents", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("jwt_secret")
    @classmethod
    def secret_long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"CRM_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long")
        return secret

    @property
    def production(self) -> bool:
        """No introspection, no GraphiQL, no "Did you mean ...?" in validation errors."""
        return self.env is Environment.PRODUCTION

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
