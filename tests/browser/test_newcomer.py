"""What a newcomer meets on the forms and buttons: messages in words, only the fields
that apply, a failed action's reason (not Ansible's framing), and a button that cannot
run yet saying what to do first. axe-core checks every page (conftest's ``page``)."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import assert_accessible, screenshot, sign_in
from tests.fixtures.factories import make_platform, make_server, make_site
from tests.fixtures.stack import Stack

SSH_FIELDS = ("SSH user", "SSH port", "Python")


async def test_a_bad_server_name_says_what_a_name_looks_like(page: Page) -> None:
    await sign_in(page, "admin")
    await page.goto("/servers/new")
    await page.get_by_label("Name (required)", exact=True).fill("bad name!")
    await page.get_by_label("Hostname (required)", exact=True).fill("web9.example.com")
    await page.get_by_role("button", name="Create server").click()
    error = page.locator("#f-name-error")
    await expect(error).to_contain_text("Should be a host name such as web1.example.com")
    await expect(page.locator("body")).not_to_contain_text("String should match pattern")
    await expect(page.get_by_label("Name (required)", exact=True)).to_have_value("bad name!")
    await assert_accessible(page)  # the form with its errors


async def test_a_local_server_form_hides_the_ssh_fields(page: Page) -> None:
    await sign_in(page, "admin")
    await page.goto("/servers/new")
    # Name and Hostname say how they differ.
    await expect(page.locator("#f-name-help")).to_contain_text("What Aegir calls this server")
    await expect(page.locator("#f-fields-hostname-help")).to_contain_text(
        "The address Aegir connects to"
    )
    connection = page.get_by_label("Connection", exact=True)
    await expect(connection).to_have_value("ssh")
    for label in SSH_FIELDS:
        await expect(page.get_by_label(label, exact=True)).to_be_visible()
    await connection.select_option("local")
    for label in SSH_FIELDS:
        await expect(page.get_by_label(label, exact=True)).to_be_hidden()
    await expect(page.get_by_label("HTTP port", exact=True)).to_be_visible()
    await screenshot(page, "server-form-local")
    await connection.select_option("ssh")
    for label in SSH_FIELDS:
        await expect(page.get_by_label(label, exact=True)).to_be_visible()

    # A local server, saved: its edit form opens with the SSH fields hidden.
    await connection.select_option("local")
    await page.get_by_label("Name (required)", exact=True).fill("control")
    await page.get_by_label("Hostname (required)", exact=True).fill("localhost")
    await page.get_by_role("button", name="Create server").click()
    await expect(page.get_by_role("heading", name="control")).to_be_visible()
    await page.get_by_role("link", name="Change").click()
    await expect(page.get_by_label("Connection", exact=True)).to_have_value("local")
    await expect(page.get_by_label("SSH user", exact=True)).to_be_hidden()
    await assert_accessible(page)


async def test_a_failed_action_says_why_in_words_with_a_link_to_its_output(
    page: Page, site_stack: Stack
) -> None:
    with site_stack.client() as http:
        app = site_stack.make_app(http, "refuser")
    await sign_in(page, "admin")
    await page.goto(f"/testapps/{app['id']}")
    await page.get_by_role("button", name="Refuse").click()
    alert = page.locator("#action-result").get_by_role("alert")
    await expect(alert).to_contain_text("Refuse failed: ", timeout=60_000)
    await expect(alert).to_contain_text("Drupal is not installed here: install the site first")
    text = await alert.inner_text()
    assert "\x1b" not in text and "PLAY RECAP" not in text and "fatal:" not in text
    await assert_accessible(page)
    await screenshot(page, "action-failed", full_page=False)

    await alert.get_by_role("link", name="Full output").click()
    await expect(page.get_by_role("heading", name="Refuse: full output")).to_be_visible()
    output = page.get_by_label("Output", exact=True)
    await expect(output).to_contain_text("PLAY RECAP")
    await expect(output).to_contain_text("Drupal is not installed here")
    assert "\x1b" not in await output.inner_text()


async def test_log_in_on_a_site_not_installed_says_to_install_it_first(
    page: Page, site_stack: Stack
) -> None:
    async with httpx.AsyncClient(
        base_url=site_stack.base_url, headers=site_stack.headers, timeout=30
    ) as http:
        server = await make_server(http, "db7.example.com")
        platform = await make_platform(http, server, "drupal-7x")
        site = await make_site(http, platform, server, "fresh.example.com")
        refused = await http.post(f"/api/v1/sites/{site['id']}/actions/login")
    assert refused.status_code == 409
    assert "Install the site first" in refused.json()["detail"]
    await sign_in(page, "admin")
    await page.goto(f"/sites/{site['id']}")
    login = page.get_by_role("button", name="Log in")
    await expect(login).to_be_disabled()
    await expect(login).to_have_accessible_description("Install the site first")
    operations = page.get_by_role("region", name="Operations")
    await expect(
        operations.get_by_role("button", name="Run Verify: Install the site first")
    ).to_be_disabled()
