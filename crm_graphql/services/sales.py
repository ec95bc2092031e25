from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_graphql.db import repository as repo
from crm_graphql.db.unit_of_work import Database, conditional_write
from crm_graphql.domain.access import Actor, Permission, require
from crm_graphql.domain.enums import SaleStage
from crm_graphql.domain.errors import Violation
from crm_graphql.domain.lead import Sale
from crm_graphql.domain.lifecycle import check_sale_transition, sale_stages_that_may_move_to
from crm_graphql.services.errors import not_found


class SaleService:
    def __init__(self, engine: AsyncEngine) -> None:
        self.db = Database(engine)

    async def advance_stage(self, actor: Actor, sale_id: int, to: SaleStage) -> Sale:
        require(actor, Permission.ADVANCE_SALE_STAGE)
        allowed_from = sale_stages_that_may_move_to(to)
        async with self.db.single_statement() as conn:

            async def why_not() -> Violation | None:
                current = (await repo.sales_by_ids(conn, [sale_id])).get(sale_id)
                if current is None:
                    raise not_found("sale", "sale_id")
                return check_sale_transition(current.stage, to)

            return await conditional_write(
                "sale",
                partial(repo.advance_sale, conn, actor, sale_id, allowed_from, to)
                if allowed_from
                else None,
                why_not,
            )
