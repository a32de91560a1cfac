"""A real browser (Debian's chromium, driven by Playwright) against the whole system.

The stack is the one the end-to-end tests use: uvicorn, a worker, the relay and Redis
as processes, on SQLite, with the test catalogue. People sign in through /login.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator

import pytest
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
    yield opened
    await context.close()


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
