"""The dashboard: server-rendered pages and HTMX fragments from the same templates."""

from fastapi import APIRouter

from app.web import accounts, batches, entities, home, notifications, runs, schedules, teams

router = APIRouter(include_in_schema=False)
router.include_router(home.router)
router.include_router(accounts.router)
router.include_router(runs.router)
router.include_router(notifications.router)
router.include_router(batches.router)
router.include_router(schedules.router)
router.include_router(teams.router)
# Last: "/{plural}" would otherwise answer for paths that other routers serve.
router.include_router(entities.router)

__all__ = ["router"]
