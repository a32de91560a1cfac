from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import Authenticated, CatalogDep
from app.catalog.schemas import CatalogRead, describe_catalog

router = APIRouter(prefix="/api/v1", tags=["catalog"], dependencies=[Authenticated])


@router.get(
    "/catalog",
    response_model=CatalogRead,
    summary="Task, operation and entity types",
    operation_id="catalog_get",
)
async def read_catalog(catalog: CatalogDep) -> CatalogRead:
    return describe_catalog(catalog)
