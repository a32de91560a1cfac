"""The tokens page as a newcomer uses it: a styled form, a copy button for the token shown
once, and a Revoke that asks first."""

from __future__ import annotations

from playwright.async_api import Dialog, Page, expect

from tests.browser.conftest import sign_in
from tests.fixtures.stack import Stack


async def test_a_token_is_copied_and_revoked_only_when_confirmed(
    page: Page, site_stack: Stack
) -> None:
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await sign_in(page, "admin")
    await page.goto("/tokens")
    await page.get_by_label("Name (what it is for)").fill("browser-copy")
    await page.get_by_role("button", name="Create token").click()
    shown = (await page.locator("#new-token").inner_text()).strip()
    assert shown.startswith("aegir_")
    await page.get_by_role("button", name="Copy").click()
    await expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == shown

    row = page.get_by_role("row").filter(has_text="browser-copy")
    answers = iter([False, True])
    asked: list[str] = []

    async def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await (dialog.accept() if next(answers) else dialog.dismiss())

    page.on("dialog", answer)
    await row.get_by_role("button", name="Revoke").click()
    await expect(row).to_contain_text("active")  # dismissed: nothing sent
    await row.get_by_role("button", name="Revoke").click()
    await expect(row).to_contain_text("revoked")
    assert len(asked) == 2 and "browser-copy" in asked[0]
    assert await page.locator("link[rel=icon]").count() == 1


async def test_the_favicon_is_served(page: Page, site_stack: Stack) -> None:
    answer = await page.request.get("/favicon.ico")
    assert answer.status == 200
    assert answer.headers["content-type"] == "image/x-icon"
    assert (await answer.body())[:4] == b"\x00\x00\x01\x00"  # an ICO file
