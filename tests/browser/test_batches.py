"""A batch from the dashboard: "Run on many" on a list page, then the batch page, which
follows its items live over /ws/events (no reload) to the summary."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser.conftest import screenshot, sign_in
from tests.fixtures.stack import Stack


async def test_the_batch_page_follows_its_items_live(page: Page, site_stack: Stack) -> None:
    names = [f"live-batch-{n}" for n in range(3)]
    with site_stack.client() as http:
        for name in names:
            site_stack.make_app(http, name)
    await sign_in(page, "admin")
    await page.goto("/testapps")
    await page.get_by_role("link", name="Run on many").click()
    await page.get_by_label("Operation").select_option(label="No-op")
    for name in names:
        await page.get_by_label(name, exact=True).check()
    await page.get_by_label("Values, given once", exact=False).fill(
        '{"noop": {"lines": 1, "sleep": 4}}'
    )
    await page.get_by_label("At once").fill("1")
    await page.get_by_role("button", name="Start").click()
    await expect(page.get_by_role("heading", name="No-op", exact=False)).to_be_visible()
    # Marks this document: a reload or a navigation would lose it.
    await page.evaluate("window.aegirSamePage = true")
    rows = page.locator("tr[data-item]")
    await expect(rows).to_have_count(3)
    # One at a time: the second runs while the third waits, as the page shows live.
    second = page.locator(f'tr[data-item="{names[1]}"]')
    await expect(second).to_have_attribute("data-status", "running", timeout=30_000)
    await expect(page.locator(f'tr[data-item="{names[2]}"]')).to_have_attribute(
        "data-status", "pending"
    )
    await expect(page.locator("#batch-summary")).to_have_text("3 succeeded", timeout=60_000)
    for name in names:
        row = page.locator(f'tr[data-item="{name}"]')
        await expect(row).to_have_attribute("data-status", "succeeded")
        await expect(row.get_by_role("link", name="run")).to_be_visible()
    assert await page.evaluate("window.aegirSamePage === true")
    await screenshot(page, "batch")
