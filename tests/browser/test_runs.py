"""Running operations from the dashboard, and watching them, in a real browser."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import screenshot, sign_in
from tests.fixtures.stack import Stack

LOG_STATE = ".log-state"
# Notes each answer once the page has handled it: a "loadend" listener added at send()
# runs after htmx's onload, which swaps what came.
ANSWERED = """
window.aegirAnswered = [];
const send = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.send = function (body) {
  this.addEventListener('loadend', () => window.aegirAnswered.push(this.responseURL));
  return send.call(this, body);
};
"""


class Held:
    """A route handler: the server answers at once; the browser gets the answer only
    once released (those asked for later go straight through)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = asyncio.Event()  # one answer is held at least

    async def __call__(self, route: Route) -> None:
        response = await route.fetch()
        if not self.release.is_set():
            self.holding.set()
            await self.release.wait()
        await route.fulfill(response=response)


@pytest.fixture
async def admin(page: Page) -> Page:
    await sign_in(page, "admin")
    return page


async def make_testapp(page: Page, name: str) -> None:
    await page.goto("/testapps/new")
    await page.get_by_label("Name (required)", exact=True).fill(name)
    await page.get_by_role("button", name="Create test app").click()
    await expect(page.get_by_role("heading", name=name)).to_be_visible()


async def start_run(page: Page, name: str, **values: str) -> None:
    """From the entity page: Run, fill the generated form, submit; lands on the run."""
    await page.get_by_role("link", name="Run Run", exact=True).click()
    for label, value in values.items():
        await page.get_by_label(label.capitalize(), exact=True).fill(value)
    await page.get_by_role("button", name=f"Run {name}").click()
    await expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))


async def test_a_run_shows_its_log_lines_live_and_its_end_without_a_reload(admin: Page) -> None:
    page = admin
    await make_testapp(page, "live-log")
    await start_run(page, "live-log", lines="10", pace="0.5")
    await page.evaluate("window.notReloaded = true")
    log = page.locator(".log-scroll")
    summary = page.get_by_role("region", name="Run status")
    await expect(log).to_contain_text("line 2")
    await expect(summary.locator(".run-status")).to_contain_text("running")
    await expect(log).not_to_contain_text("line 10")  # lines come while it runs
    await screenshot(page, "run-live")
    await expect(summary.locator(".run-status")).to_contain_text("succeeded", timeout=30_000)
    await expect(log).to_contain_text("line 10")
    await expect(page.locator(LOG_STATE)).to_contain_text("Finished: succeeded, exit code 0")
    await expect(summary).to_contain_text("Steps done: 1 of 1")
    await expect(summary.locator(".exit-code")).to_have_text("0")
    await expect(summary.locator("dd").first).to_have_text("admin")  # who started it
    assert await page.evaluate("window.notReloaded") is True
    await expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)


async def test_ansi_colours_are_rendered_and_everything_else_escaped(admin: Page) -> None:
    html = await admin.evaluate(r"aegirAnsiToHtml('\x1b[1;31mred\x1b[0m <b>&</b>\x1b[2K')")
    assert html == '<span class="ansi-fg-1 ansi-bold">red</span> &lt;b&gt;&amp;&lt;/b&gt;'


async def test_an_invalid_field_is_named_beside_it_and_nothing_runs(admin: Page) -> None:
    page = admin
    await make_testapp(page, "invalid-form")
    await page.get_by_role("link", name="Run Run", exact=True).click()
    lines = page.get_by_label("Lines", exact=True)
    await lines.fill("-5")
    await page.get_by_label("Output", exact=True).fill('{"result": "ok"}')
    await page.get_by_role("button", name="Run invalid-form").click()
    beside = page.locator("#f-first-lines-error")
    await expect(beside).to_contain_text("greater than or equal to 0")
    await expect(lines).to_have_attribute("aria-invalid", "true")
    await expect(lines).to_have_value("-5")  # what was typed stays
    await expect(page.locator("#form-errors")).to_contain_text("Nothing was run")
    await expect(page).to_have_url(re.compile(r"/operations/[0-9a-f-]{36}/run$"))
    await screenshot(page, "run-form-error")
    await page.get_by_role("link", name="invalid-form").click()
    history = page.get_by_role("region", name="Run history")
    await expect(history).to_contain_text("No runs yet.")


async def test_a_destructive_operation_wants_the_name_typed(admin: Page, site_stack: Stack) -> None:
    page = admin
    with site_stack.client() as http:
        server = http.post(
            "/api/v1/servers",
            json={"name": "db9.example.com", "fields": {"hostname": "db9.example.com"}},
        ).json()
        body = {"name": "doomed", "fields": {"root": "/srv/doomed"}}
        http.post("/api/v1/platforms", json={**body, "references": {"server": server["id"]}})
    await page.goto("/platforms?name=doomed")
    await page.get_by_role("link", name="doomed").click()
    await page.get_by_role("link", name="Run Delete", exact=True).click()
    await page.get_by_label("Type doomed to confirm").fill("doomd")
    await page.get_by_role("button", name="Delete doomed").click()
    await expect(page.locator("#f-confirm-error")).to_contain_text("type doomed exactly")
    await page.get_by_role("link", name="doomed").click()
    await expect(page.get_by_role("region", name="Run history")).to_contain_text("No runs yet.")


async def test_log_in_sends_the_browser_to_the_link_the_action_answered(admin: Page) -> None:
    page = admin
    await make_testapp(page, "login-app")
    link = "http://login-app/user/reset/1/one-time-token"

    async def site(route: Route) -> None:  # the site itself is not there: stand in for it
        await route.fulfill(content_type="text/html", body="<h1>Welcome back</h1>")

    await page.route("http://login-app/**", site)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(link)
    await expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()


async def test_an_action_that_fails_says_why(admin: Page) -> None:
    page = admin
    await make_testapp(page, "slow-app")
    await page.get_by_role("button", name="Slow").click()
    await expect(page.locator("#action-result")).to_contain_text("no answer within 1 seconds")
    await expect(page.get_by_role("heading", name="slow-app")).to_be_visible()


async def test_a_running_operation_is_cancelled_from_its_page(admin: Page) -> None:
    page = admin
    await make_testapp(page, "cancel-me")
    await start_run(page, "cancel-me", lines="2", sleep="120")
    summary = page.get_by_role("region", name="Run status")
    await expect(page.locator(".log-scroll")).to_contain_text("line 2")
    await expect(summary.locator(".run-status")).to_contain_text("running")
    await page.get_by_role("button", name="Cancel run").click()
    await expect(summary.locator(".run-status")).to_contain_text("cancelled", timeout=30_000)
    await expect(page.locator(LOG_STATE)).to_contain_text("Finished: cancelled")


async def test_a_100000_line_log_stays_usable(admin: Page) -> None:
    page = admin
    await make_testapp(page, "big-log")
    await start_run(page, "big-log", lines="100000", sleep="120")
    log = page.locator(".log-scroll")
    count = page.locator(".log-count")
    await expect(count).to_have_text(re.compile(r"\d+,\d{3} lines"))  # a screenful and more
    # Scroll up while it is still coming: following pauses, the top stays in view.
    await log.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
    follow = page.get_by_role("button", name="Follow new lines")
    await expect(follow).to_be_visible()
    await expect(page.locator(".log-line").first).to_have_text(re.compile(r"^1\s*line 1$"))
    await expect(count).to_have_text("100,001 lines", timeout=90_000)
    assert await log.evaluate("el => el.scrollTop") == 0, "following stayed paused"
    assert await page.locator(".log-line").count() < 400, "only what is on screen is drawn"
    await follow.click()
    await expect(page.locator(".log-line").last).to_have_text(re.compile(r"^100001"))
    await log.press("PageUp")  # the keyboard scrolls it too
    await expect(follow).to_be_visible()
    summary = page.get_by_role("region", name="Run status")
    await page.get_by_role("button", name="Cancel run").click()
    await expect(summary.locator(".run-status")).to_contain_text("cancelled", timeout=30_000)
    full = await page.get_by_role("link", name="Full text").get_attribute("href")
    assert full is not None
    text = await (await page.request.get(full)).text()
    assert text.startswith("line 1\nline 2\n") and "\nline 100000\n" in text
    assert "to stderr" in text.splitlines()


async def test_a_lost_connection_resumes_from_the_last_line_without_duplicates(
    admin: Page,
) -> None:
    page = admin
    await make_testapp(page, "reconnect")
    await start_run(page, "reconnect", lines="30", pace="0.15")
    await expect(page.locator(".log-scroll")).to_contain_text("line 3")
    await page.evaluate("document.querySelector('[data-log-viewer]').aegirLog.socket.close()")
    await expect(page.locator(LOG_STATE)).to_contain_text("Finished: succeeded", timeout=30_000)
    await expect(page.locator(".log-count")).to_have_text("31 lines")
    seqs = await page.evaluate(
        "document.querySelector('[data-log-viewer]').aegirLog.lines.map(l => l.seq)"
    )
    assert seqs == list(range(1, 32))


async def test_the_runs_list_updates_live(admin: Page, site_stack: Stack) -> None:
    page = admin
    await page.goto("/runs")
    await expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    await page.evaluate("window.notReloaded = true")
    with site_stack.client() as http:
        app = site_stack.make_app(http, "listed-live")
        site_stack.trigger(http, app, "run", {"first": {"lines": 1}})
    row = page.get_by_role("row").filter(has_text="listed-live")
    await expect(row).to_contain_text("succeeded", timeout=30_000)
    assert await page.evaluate("window.notReloaded") is True
    await screenshot(page, "runs-list")


@pytest.fixture
def held() -> Iterator[Callable[[], Held]]:
    """Makes ``Held`` handlers; whatever they still hold goes at the end (a failed test
    would otherwise leave the page waiting on it as it closes)."""
    made: list[Held] = []

    def make() -> Held:
        made.append(Held())
        return made[-1]

    yield make
    for handler in made:
        handler.release.set()


async def _cancel_held(page: Page, name: str, *routes: tuple[str, Held]) -> None:
    """A running run's page, its Cancel clicked, the answers of ``routes`` held."""
    await page.add_init_script(ANSWERED)
    await make_testapp(page, name)
    await start_run(page, name, lines="2", sleep="120")
    status = page.get_by_role("region", name="Run status").locator(".run-status")
    await expect(status).to_contain_text("running", timeout=30_000)
    for pattern, handler in routes:
        await page.route(pattern, handler)
    await page.get_by_role("button", name="Cancel run").click()
    await expect(page.locator(LOG_STATE)).to_contain_text("Finished: cancelled", timeout=30_000)


async def _answered(page: Page, path: str) -> None:
    await page.wait_for_function(f"aegirAnswered.some(url => url.endsWith('{path}'))")


async def test_the_answer_to_cancel_coming_after_the_end_leaves_the_end(
    admin: Page, held: Callable[[], Held]
) -> None:
    """The Cancel request answers `cancelling`, but the run ended meanwhile and the page
    showed it: the late answer must not bring `cancelling` back."""
    page = admin
    cancel = held()
    await _cancel_held(page, "late-answer", ("**/runs/*/cancel", cancel))
    status = page.get_by_role("region", name="Run status").locator(".run-status")
    await expect(status).to_contain_text("cancelled", timeout=30_000)
    cancel.release.set()
    await _answered(page, "/cancel")
    await expect(status).to_contain_text("cancelled")
    await expect(page.locator("#run-actions button")).to_have_count(0)


async def test_a_re_read_answered_after_the_answer_to_cancel_still_shows_the_end(
    admin: Page, held: Callable[[], Held]
) -> None:
    """The run ends; the page re-reads its status; the answer to Cancel (`cancelling`)
    comes first, then the re-read: the page must end up showing `cancelled`."""
    page = admin
    reads, cancel = held(), held()
    await _cancel_held(
        page, "early-read", ("**/runs/*/summary", reads), ("**/runs/*/cancel", cancel)
    )
    await asyncio.wait_for(reads.holding.wait(), 10)
    status = page.get_by_role("region", name="Run status").locator(".run-status")
    cancel.release.set()
    await _answered(page, "/cancel")
    await expect(status).to_contain_text("cancelling")
    reads.release.set()
    await expect(status).to_contain_text("cancelled", timeout=30_000)
    await expect(page.locator("#run-actions button")).to_have_count(0)
