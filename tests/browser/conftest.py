"""A real browser (Debian's chromium, driven by Playwright) against the whole system.

The stack is the one the end-to-end tests use: uvicorn, a worker, the relay and Redis
as processes, on SQLite, with the test catalogue. People sign in through /login.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe  # type: ignore[import-untyped]
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.fixtures.services import program
from tests.fixtures.stack import ROOT, Stack, running_stack

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a-long-test-password"
SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    chromium = program("chromium", "chromium")  # Debian's: Playwright downloads none here
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=ARGS
        )
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def site_stack(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('browser') / 'aegir.sqlite3'}"
    with running_stack(url) as system:
        yield system


@pytest.fixture
async def page(browser: Browser, site_stack: Stack) -> AsyncIterator[Page]:
    context = await browser.new_context(
        base_url=site_stack.base_url, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(20_000)
    opened = await context.new_page()
    found: list[str] = []
    _check_each_visit(opened, found)
    yield opened
    if not opened.is_closed():
        found.extend(await accessibility_problems(opened))  # where the test ended
    await context.close()
    assert not found, "accessibility (axe-core), serious or critical:\n" + "\n".join(found)


AXE = Axe()  # axe-core as the package bundles it: nothing is fetched
SEVERE = {"serious", "critical"}


async def accessibility_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each
    (none for a page that is not Aegir's: about:blank, a link an action answered)."""
    if not page.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        return []
    results = await AXE.run(page)
    return [
        f"{page.url}: {violation['id']} ({violation['impact']}): {violation['help']}: "
        + "; ".join(", ".join(node["target"]) for node in violation["nodes"][:5])
        for violation in results.response["violations"]
        if violation["impact"] in SEVERE
    ]


async def assert_accessible(page: Page) -> None:
    """For a state a test reaches without a page load (a fragment swapped in)."""
    problems = await accessibility_problems(page)
    assert not problems, "\n".join(problems)


def _check_each_visit(page: Page, found: list[str]) -> None:
    """Every page a test opens with ``goto`` is checked once it has loaded, and the page
    a test ends on too (``page`` fixture); problems fail the test at its end."""
    goto: Callable[..., Awaitable[Any]] = page.goto

    async def checked_goto(url: str, **options: Any) -> Any:
        answer = await goto(url, **options)
        found.extend(await accessibility_problems(page))
        return answer

    page.goto = checked_goto  # type: ignore[method-assign]


async def sign_in(page: Page, username: str) -> None:
    """Through the real form, as a person does."""
    await page.goto("/login")
    await page.get_by_label("User name").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """For the README, when asked: AEGIR_SCREENSHOTS=1 pytest tests/browser."""
    if os.environ.get("AEGIR_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def uuid_in(url: str) -> str:
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", url)
    assert found, url
    return found.group(0)
