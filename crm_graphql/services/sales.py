from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db import repository as repo
from crm_graphql.db.driver import transaction
from crm_graphql.domain.access import Actor, Permission, require
from crm_graphql.domain.enums import SaleStage
from crm_graphql.domain.errors import RuleViolation
from crm_graphql.domain.lead import Sale
from crm_graphql.domain.lifecycle import check_sale_transition
from crm_graphql.services.errors import not_found


class SaleService:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def advance_stage(self, actor: Actor, sale_id: int, to: SaleStage) -> Sale:
        require(actor, Permission.ADVANCE_SALE_STAGE)
        async with transaction(self.engine) as conn:
            sale = await repo.lock_sale_for(conn, actor, sale_id)
            if sale is None:
                raise not_found("sale", "saleId")
            violation = check_sale_transition(sale.stage, to)
            if violation:
                raise RuleViolation(violation)
            return await repo.advance_sale(conn, sale_id, sale.stage, to, actor.user_id)
