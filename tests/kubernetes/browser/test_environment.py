"""Through the dashboard's generated forms: create an environment, install it, deploy a
release, and watch the run end; the cluster is the kmock emulator."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser.conftest import screenshot, sign_in
from tests.fixtures.kmock_thread import ThreadedCluster
from tests.fixtures.stack import Stack
from tests.kubernetes.samples import IMAGE

NEW_IMAGE = IMAGE.replace("a" * 64, "d" * 64)


TOKEN = "browser-service-account-token"


def _prepare(stack: Stack, cluster: ThreadedCluster) -> None:
    """A cluster (its token not yet given), a project and two releases, over the API."""
    everything = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    reviews = "post /apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
    cluster.call(lambda: cluster.emulator[reviews] << {"status": {"resourceRules": [everything]}})
    with stack.client() as http:
        fields = {"api_url": cluster.url}
        assert http.post("/api/v1/clusters", json={"name": "k1", "fields": fields}).is_success
        body = {"name": "blog", "fields": {"git_url": "https://git.example.com/blog.git"}}
        project = http.post("/api/v1/projects", json=body).json()
        for name, image in (("blog-1", IMAGE), ("blog-2", NEW_IMAGE)):
            release = {"name": name, "fields": {"image": image, "git_ref": name},
                       "references": {"project": project["id"]}}  # fmt: skip
            assert http.post("/api/v1/releases", json=release).is_success


async def _run(page: Page, operation: str, environment: str) -> None:
    await page.get_by_role("link", name=f"Run {operation}", exact=True).click()
    if operation == "Deploy":
        await page.get_by_label("Release (required)", exact=True).select_option("blog-2")
    if operation == "Verify":
        await page.get_by_label("Token", exact=True).fill(TOKEN)
    await page.get_by_role("button", name=f"{operation} {environment}").click()
    await expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    summary = page.get_by_role("region", name="Run status")
    await expect(summary.locator(".run-status")).to_contain_text("succeeded", timeout=60_000)


async def test_an_environment_is_created_installed_and_deployed_from_the_dashboard(
    page: Page, site_stack: Stack, cluster: ThreadedCluster
) -> None:
    _prepare(site_stack, cluster)
    await sign_in(page, "admin")
    # The token is a secret field of the cluster's verify: typed once, kept encrypted.
    await page.goto("/clusters")
    await page.get_by_role("link", name="k1").click()
    await _run(page, "Verify", "k1")
    assert TOKEN not in await page.content()
    await page.goto("/environments/new")
    await page.get_by_label("Name (required)", exact=True).fill("blog-prod")
    await page.get_by_label("Release (required)", exact=True).select_option(label="blog-1")
    await page.get_by_label("Hostnames", exact=True).fill("blog.example.com")
    await page.get_by_label("Tier", exact=True).select_option("production")
    await page.get_by_role("button", name="Create environment").click()
    await expect(page.get_by_role("heading", name="blog-prod")).to_be_visible()
    await screenshot(page, "environment-page")

    await _run(page, "Install", "blog-prod")
    await expect(page.locator(".log-scroll")).to_contain_text("rolled out")
    await page.get_by_role("link", name="blog-prod").first.click()
    await _run(page, "Deploy", "blog-prod")
    log = page.locator(".log-scroll")
    await expect(log).to_contain_text("deploying release blog-2")
    await expect(log).to_contain_text("applied Deployment aegir-blog-prod/app")
    deployment = cluster.stored("apps/v1/deployments", "app", "aegir-blog-prod")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE
    # The environment's page: the release applied and the deploy in its history.
    await page.get_by_role("link", name="blog-prod").first.click()
    await expect(page.locator("#observed-title")).to_be_visible()
    deploys = page.get_by_role("table", name="Deploys")
    await expect(deploys).to_contain_text("blog-2")
    await expect(deploys).to_contain_text("deploy")
    await screenshot(page, "environment-deployed")
