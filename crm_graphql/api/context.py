"""The per-request context: services, the caller, and DataLoaders that live exactly as long as
one operation (or one subscription event), so nothing cached outlives what it describes."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLError
from strawberry.dataloader import DataLoader

from crm_graphql.domain.access import Actor, User
from crm_graphql.domain.enums import LeadStage, SaleStage
from crm_graphql.domain.lead import Lead, Sale, StageChange
from crm_graphql.services.container import Services
from crm_graphql.tokens import Authentication, InvalidToken

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"


def unauthenticated(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": UNAUTHENTICATED})


@dataclass
class Loaders:
    """Batch loads on behalf of one actor: what the actor may not read loads as None."""

    lead: DataLoader[int, Lead | None]
    sale: DataLoader[int, Sale | None]
    sale_by_lead: DataLoader[int, Sale | None]
    lead_history: DataLoader[int, list[StageChange[LeadStage]]]
    lead_history_with_merged: DataLoader[int, list[StageChange[LeadStage]]]
    sale_history: DataLoader[int, list[StageChange[SaleStage]]]
    user: DataLoader[str, User | None]

    @classmethod
    def create(cls, services: Services, actor: Actor) -> "Loaders":
        queries = services.queries
        return cls(
            lead=DataLoader(lambda ids: queries.leads_by_ids(actor, ids)),
            sale=DataLoader(lambda ids: queries.sales_by_ids(actor, ids)),
            sale_by_lead=DataLoader(lambda ids: queries.sales_by_lead_ids(actor, ids)),
            lead_history=DataLoader(queries.lead_histories),
            lead_history_with_merged=DataLoader(queries.lead_histories_with_merged),
            sale_history=DataLoader(queries.sale_histories),
            user=DataLoader(queries.users_by_ids),
        )


@dataclass
class Context:
    services: Services
    # Who the request authenticated as, or why it did not.
    authentication: Authentication | InvalidToken
    request: Any = None
    # Strawberry's sub-response for HTTP requests through its view, None for the JSON POSTs
    # answered without it (web/graphql_http.py): nothing may rely on it.
    response: Any = None
    connection_params: dict[str, Any] | None = field(default=None, repr=False)
    _loaders: Loaders | None = field(default=None, init=False, repr=False)

    @property
    def actor(self) -> Actor:
        """The caller; raises the UNAUTHENTICATED GraphQL error for a request without one."""
        if isinstance(self.authentication, InvalidToken):
            raise unauthenticated(str(self.authentication))
        # A WebSocket lives on after its token expires; the token stops authorizing then.
        if self.authentication.expires_at <= datetime.now(UTC):
            raise unauthenticated("The token has expired.")
        return self.authentication.actor

    @property
    def loaders(self) -> Loaders:
        # Every use checks the caller, so nothing loads without a valid, unexpired token.
        actor = self.actor
        if self._loaders is None:
            self._loaders = Loaders.create(self.services, actor)
        return self._loaders

    def check_token(self) -> None:
        """Raise UNAUTHENTICATED unless the caller's token is still valid."""
        self.actor  # noqa: B018  (the property checks)

    def renew_loaders(self) -> None:
        """Forget what was loaded so far: after a write it may no longer be true."""
        self._loaders = None

    def start_subscription_event(self) -> None:
        """Resolve the next subscription event as a new operation: for a caller whose token is
        still valid (else UNAUTHENTICATED, which ends the subscription) and with loaders of its
        own, since the context lives as long as the socket and its loaders would serve stale
        leads."""
        self._loaders = Loaders.create(self.services, self.actor)
