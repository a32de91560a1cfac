"""A newcomer's first minute: told what to do first, they create a server, a platform
and a site through the pages."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser.conftest import screenshot, sign_in
from tests.fixtures.stack import Stack


async def test_the_dashboard_leads_a_newcomer_from_server_to_site(
    page: Page, site_stack: Stack
) -> None:
    site_stack.create_account("newcomer", team="fresh", role="admin")
    await sign_in(page, "newcomer")
    steps = page.get_by_role("region", name="Get started")
    await expect(steps).to_contain_text("Create a server")
    await screenshot(page, "home-first-minute")

    await steps.get_by_role("link", name="Create a server").click()
    await expect(page.get_by_role("heading", name="New server")).to_be_visible()
    await page.get_by_label("Name (required)", exact=True).fill("web1.example.com")
    await page.get_by_label("Hostname (required)", exact=True).fill("web1.example.com")
    await page.get_by_role("button", name="Create server").click()
    await expect(page.get_by_role("heading", name="web1.example.com")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/servers/[0-9a-f-]{36}$"))

    await page.get_by_role("link", name="Aegir").click()
    await expect(steps).to_contain_text("Server: 1 created")
    await steps.get_by_role("link", name="Create a platform").click()
    await page.get_by_label("Name (required)", exact=True).fill("drupal-10")
    await page.get_by_label("Root (required)", exact=True).fill("/var/aegir/platforms/drupal-10")
    await expect(page.get_by_label("Server (required)", exact=True)).to_have_value(
        re.compile(".+")
    )  # the only one
    await page.get_by_role("button", name="Create platform").click()
    await expect(page.get_by_role("heading", name="drupal-10")).to_be_visible()
    await expect(page.get_by_role("link", name="web1.example.com")).to_be_visible()

    await page.get_by_role("link", name="Aegir").click()
    await steps.get_by_role("link", name="Create a site").click()
    await page.get_by_label("Name (required)", exact=True).fill("www.example.com")
    await page.get_by_label("HTTPS", exact=True).check()
    await page.get_by_role("button", name="Create site").click()
    await expect(page.get_by_role("heading", name="www.example.com")).to_be_visible()
    operations = page.get_by_role("region", name="Operations")
    await expect(operations.get_by_role("link", name="Run Install")).to_be_visible()
    await expect(operations).to_contain_text("never run")
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    await screenshot(page, "site-page")

    await page.get_by_role("link", name="Aegir").click()
    await expect(page.get_by_role("region", name="Running now")).to_be_visible()
    await expect(page.get_by_role("region", name="Get started")).to_have_count(0)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Sites").click()
    await expect(page.get_by_role("link", name="www.example.com")).to_be_visible()
    await screenshot(page, "sites-list")
