"""Teams and members, managed by a site admin from the pages; an entity moved to another
team by someone who administers both. axe-core checks every page (conftest's ``page``)."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser.conftest import assert_accessible, screenshot, sign_in
from tests.fixtures.stack import Stack


async def test_a_site_admin_creates_a_team_and_manages_its_members(
    page: Page, site_stack: Stack
) -> None:
    site_stack.create_account("dana", team="ops", role="viewer")
    await sign_in(page, "admin")
    await page.get_by_role("link", name="Teams").click()
    await expect(page.get_by_role("heading", name="Teams", exact=True)).to_be_visible()

    await page.get_by_label("Name", exact=True).fill("Bad Name")
    await page.get_by_role("button", name="Create team").click()
    await expect(page.get_by_role("alert")).to_contain_text("lower-case letters")
    await assert_accessible(page)

    await page.get_by_label("Name", exact=True).fill("acme-web")
    await page.get_by_role("button", name="Create team").click()
    await expect(page.get_by_role("heading", name="acme-web")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/teams/[0-9a-f-]{36}$"))
    members = page.get_by_role("table")
    await expect(members).to_contain_text("No members yet.")

    await page.get_by_label("User", exact=True).select_option(label="dana")
    await page.get_by_label("Role", exact=True).select_option("operator")
    await page.get_by_role("button", name="Add member").click()
    await expect(page.get_by_label("Role of dana", exact=True)).to_have_value("operator")

    await page.get_by_label("Role of dana", exact=True).select_option("admin")
    await page.get_by_role("button", name="Change the role of dana").click()
    await expect(page.get_by_label("Role of dana", exact=True)).to_have_value("admin")
    await screenshot(page, "team-page")

    # Declined first: nothing changes; then confirmed.
    page.once("dialog", lambda dialog: dialog.dismiss())
    await page.get_by_role("button", name="Remove dana").click()
    await expect(page.get_by_label("Role of dana", exact=True)).to_have_value("admin")
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Remove dana").click()
    await expect(members).to_contain_text("No members yet.")

    await page.get_by_role("link", name="Teams", exact=True).first.click()
    await expect(page.get_by_role("link", name="acme-web")).to_be_visible()


async def test_people_who_are_not_site_admins_see_no_team_pages(
    page: Page, site_stack: Stack
) -> None:
    site_stack.create_account("erin", team="ops", role="admin")
    await sign_in(page, "erin")
    await expect(page.get_by_role("link", name="Teams")).to_have_count(0)
    answer = await page.goto("/teams")
    assert answer is not None and answer.status == 403


async def test_an_admin_of_both_teams_moves_an_entity_between_them(
    page: Page, site_stack: Stack
) -> None:
    site_stack.create_account("frank", team="red", role="admin")
    site_stack.create_account("gina", team="blue", role="admin")
    with site_stack.client() as http:
        teams = {team["name"]: team["id"] for team in http.get("/api/v1/teams").json()}
        users = {user["username"]: user["id"] for user in http.get("/api/v1/users").json()}
        role = {"role": "admin"}
        put = http.put(f"/api/v1/teams/{teams['blue']}/members/{users['frank']}", json=role)
        assert put.status_code == 200, put.text
        app = http.post("/api/v1/testapps", json={"name": "mover", "team_id": teams["red"]})
        assert app.status_code == 201, app.text
    app_id = app.json()["id"]

    await sign_in(page, "frank")
    await page.goto(f"/testapps/{app_id}/edit")
    team = page.get_by_label("Team (required)", exact=True)
    await expect(team).to_have_value(teams["red"])
    await team.select_option(label="blue")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("heading", name="mover")).to_be_visible()
    with site_stack.client() as http:
        assert http.get(f"/api/v1/testapps/{app_id}").json()["team_id"] == teams["blue"]

    # gina administers blue only: she sees it now, and has nowhere to move it.
    await page.context.clear_cookies()
    await sign_in(page, "gina")
    await page.goto(f"/testapps/{app_id}/edit")
    await expect(page.get_by_role("heading", name="Change test app mover")).to_be_visible()
    await expect(page.get_by_label("Team (required)", exact=True)).to_have_count(0)
