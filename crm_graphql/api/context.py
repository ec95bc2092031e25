"""The per-request context: services, and DataLoaders that live exactly as long as one
operation (or one subscription event), so nothing cached outlives what it describes."""

from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from crm_graphql.domain.enums import LeadStage, SaleStage
from crm_graphql.domain.lead import Lead, Sale, StageChange
from crm_graphql.services.container import Services


@dataclass
class Loaders:
    lead: DataLoader[int, Lead | None]
    sale: DataLoader[int, Sale | None]
    sale_by_lead: DataLoader[int, Sale | None]
    lead_history: DataLoader[int, list[StageChange[LeadStage]]]
    lead_history_with_merged: DataLoader[int, list[StageChange[LeadStage]]]
    sale_history: DataLoader[int, list[StageChange[SaleStage]]]

    @classmethod
    def create(cls, services: Services) -> "Loaders":
        queries = services.queries
        return cls(
            lead=DataLoader(queries.leads_by_ids),
            sale=DataLoader(queries.sales_by_ids),
            sale_by_lead=DataLoader(queries.sales_by_lead_ids),
            lead_history=DataLoader(queries.lead_histories),
            lead_history_with_merged=DataLoader(queries.lead_histories_with_merged),
            sale_history=DataLoader(queries.sale_histories),
        )


@dataclass
class Context:
    services: Services
    request: Any = None
    response: Any = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders.create(self.services)
