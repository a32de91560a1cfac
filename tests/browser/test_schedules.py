"""The schedule form in a real browser: the preview follows what is typed."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser.conftest import screenshot, sign_in
from tests.browser.test_runs import make_testapp


async def test_the_schedule_form_previews_the_expression_as_it_is_typed(page: Page) -> None:
    await sign_in(page, "admin")
    await make_testapp(page, "scheduled")
    await page.get_by_role("link", name="Schedule No-op", exact=True).click()
    preview = page.locator("#schedule-preview")
    await page.get_by_label("Name").fill("every morning")
    await page.get_by_label("Cron expression").fill("0 7 * * 1-5")
    await page.get_by_label("Time zone").fill("Europe/Paris")
    await expect(preview).to_contain_text(
        re.compile(r"At 07:00 on Monday through Friday \(Europe/Paris\), next: \d{4}-")
    )
    await page.get_by_label("Cron expression").fill("0 7 * * 8")
    await expect(preview).to_contain_text("bad cron expression")
    await page.get_by_label("Cron expression").fill("0 7 * * 1-5")
    await expect(preview).to_contain_text("At 07:00")
    await screenshot(page, "schedule-form")
    await page.get_by_role("button", name="Schedule").click()
    await expect(page).to_have_url(re.compile(r"/schedules/[0-9a-f-]{36}$"))
    await expect(page.get_by_role("heading", name="every morning")).to_be_visible()
    await expect(page.get_by_text("No slot has come yet.")).to_be_visible()
