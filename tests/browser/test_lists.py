"""Lists filter as you type, without a submit and without a reload."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser.conftest import sign_in
from tests.fixtures.stack import Stack


async def test_a_list_filters_as_you_type(page: Page, site_stack: Stack) -> None:
    with site_stack.client() as http:
        for name in ("alpha-1.filter.test", "alpha-2.filter.test", "beta.filter.test"):
            body = {"name": name, "fields": {"hostname": name}}
            assert http.post("/api/v1/servers", json=body).status_code == 201
    await sign_in(page, "admin")
    await page.goto("/servers")
    rows = page.get_by_role("link", name="filter.test")
    await expect(page.get_by_role("link", name="beta.filter.test")).to_be_visible()
    await page.evaluate("window.aegirTestMarker = 1")  # gone if the page reloads
    await page.get_by_label("Filter by name").press_sequentially("alpha", delay=30)
    await expect(page.get_by_role("link", name="beta.filter.test")).to_have_count(0)
    await expect(rows).to_have_count(2)
    await page.get_by_label("Filter by name").fill("nothing-like-this")
    await expect(rows).to_have_count(0)
    await page.get_by_label("Filter by name").fill("")
    await expect(rows).to_have_count(3)
    assert await page.evaluate("window.aegirTestMarker") == 1  # the same page throughout
