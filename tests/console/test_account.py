"""The account screen in a real browser: tokens (scoped, expiring, shown once, revoked), orgs and members, the
namespace's Hub token (write-only) and usage as a chart and a table."""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.sync_api import Page, expect

from tests.console.conftest import api, shoot, sign_in
from tests.console.test_console import create_body
from tests.fixtures.dais_serve import Serve
from tests.fixtures.kube import wait_for


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def open_account(page: Page, serve: Serve) -> None:
    sign_in(page, serve)
    page.locator('header a[href="#/account"]').click()
    expect(page.get_by_role("heading", name="Account", exact=True)).to_be_visible()


def whoami(serve: Serve, token: str) -> int:
    return httpx.get(f"{serve.url}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_scoped_expiring_token_is_shown_once_then_revoked(serve: Serve, page: Page) -> None:
    endpoint = unique("tok")
    with api(serve) as client:
        assert client.post("/v2/endpoint/admin", json=create_body(endpoint)).status_code == 200
        client.post(f"/v2/endpoint/admin/{endpoint}/pause")  # only its name matters here
    open_account(page, serve)
    name = unique("ci")
    page.get_by_label("Token name").fill(name)
    page.get_by_label("Scope").select_option(f"admin/{endpoint}")
    page.get_by_label("Expires in days").fill("7")
    page.get_by_role("button", name="Create token").click()

    once = page.locator(".once")
    expect(once).to_contain_text("shown only this once")
    token = once.locator("code[data-token]").inner_text()
    assert token.startswith("dais_")
    expect(once.get_by_role("button", name=re.compile("^Copy token"))).to_be_visible()
    assert whoami(serve, token) == 200
    row = page.locator(f'tr[data-name="{name}"]')
    expect(row).to_contain_text(f"endpoint admin/{endpoint}")
    expect(row).to_contain_text("in 7 days")
    expect(row).to_contain_text("active")
    expect(row).not_to_contain_text(token)
    shoot(page, "account-token")
    page.get_by_role("button", name="I have copied it").click()
    expect(once).to_have_count(0)
    assert token not in page.content(), "shown once: gone from the page once dismissed"

    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("Calls with it fail at once")
    row.get_by_role("button", name="Cancel").click()
    expect(row).to_contain_text("active")  # cancelled: nothing happened
    assert whoami(serve, token) == 200
    row.get_by_role("button", name="Revoke").click()
    row.locator(".confirm").get_by_role("button", name="Revoke").click()
    expect(row.locator(".badge")).to_have_text("revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    assert whoami(serve, token) == 401
    assert not page.dialogs  # type: ignore[attr-defined]
    with api(serve) as client:
        client.delete(f"/v2/endpoint/admin/{endpoint}")


def test_orgs_and_members(serve: Serve, page: Page) -> None:
    alice, bob, org, other = unique("alice"), unique("bob"), unique("org"), unique("org")
    with api(serve) as client:
        for user in (alice, bob):
            assert client.post("/api/users", json={"name": user}).status_code == 200
        assert client.post("/api/orgs", json={"name": org, "members": [alice]}).status_code == 200
    open_account(page, serve)
    card = page.locator(f'.account-org[data-org="{org}"]')
    expect(card.locator(f'li[data-member="{alice}"]')).to_be_visible()
    card.get_by_label(f"Add a member to {org}").fill(bob)
    card.get_by_role("button", name="Add member").click()
    expect(card.locator(f'li[data-member="{bob}"]')).to_be_visible()
    card.get_by_label(f"Add a member to {org}").fill("no-such-user")
    card.get_by_role("button", name="Add member").click()
    expect(card.get_by_role("alert")).to_contain_text("user 'no-such-user' not found")
    member = card.locator(f'li[data-member="{alice}"]')
    member.get_by_role("button", name="Remove").click()
    member.locator(".confirm").get_by_role("button", name="Remove").click()
    expect(member).to_have_count(0)
    with api(serve) as client:
        assert client.get(f"/api/orgs/{org}").json()["members"] == [bob]

    # An admin creates orgs here too.
    page.get_by_label("New org").fill(other)
    page.get_by_label("Members (comma-separated)").fill(f"{alice}, {bob}")
    page.get_by_role("button", name="Create org").click()
    created = page.locator(f'.account-org[data-org="{other}"]')
    expect(created.locator("li[data-member]")).to_have_count(2)
    page.get_by_label("New org").fill(other)
    page.get_by_role("button", name="Create org").click()
    expect(page.locator("#orgs .error")).to_contain_text("is taken")
    shoot(page, "account-orgs")


def test_the_hub_token_is_write_only(serve: Serve, page: Page) -> None:
    secret = "hf_console_test_token_123"
    with api(serve) as client:
        client.delete("/api/namespaces/admin/hub-token")
    open_account(page, serve)
    state = page.locator(".hub-state")
    expect(state).to_have_attribute("data-set", "no")
    expect(state).to_contain_text("No Hub token is set for admin")
    field = page.get_by_label("Hub token", exact=True)
    expect(field).to_have_attribute("type", "password")
    field.fill("short")
    page.get_by_role("button", name="Save Hub token").click()
    expect(page.locator("#hub-token-error")).to_contain_text("at least 8 characters")
    page.get_by_label("Hub token", exact=True).fill(secret)
    page.get_by_role("button", name="Save Hub token").click()
    expect(state).to_have_attribute("data-set", "yes")
    expect(state).to_contain_text("A Hub token is set for admin, since")
    expect(page.get_by_label("Replace it with")).to_have_value("")
    assert secret not in page.content()
    with api(serve) as client:
        assert client.get("/api/namespaces/admin/hub-token").json()["set"] is True
    page.get_by_role("button", name="Remove Hub token").click()
    page.locator("#hub-token .confirm").get_by_role("button", name="Remove").click()
    expect(state).to_have_attribute("data-set", "no")
    with api(serve) as client:
        assert client.get("/api/namespaces/admin/hub-token").json()["set"] is False


def test_usage_shows_a_chart_and_a_table(serve: Serve, page: Page) -> None:
    name = unique("use")
    with api(serve) as client:
        assert client.post("/v2/endpoint/admin", json=create_body(name)).status_code == 200

        def used() -> bool:
            rows = client.get("/v2/usage/admin").json()["items"]
            return any(r["endpoint"] == name and r["replicaHours"] > 0 for r in rows)

        wait_for(used, timeout=120, what=f"a usage row of {name}", interval=1)
    open_account(page, serve)
    usage = page.locator("#usage")
    row = usage.locator(f'tr[data-endpoint="{name}"]')
    expect(row).to_contain_text("local-local-cpu-x1")
    expect(row).to_contain_text("$0.00")
    expect(usage.locator(".usage-chart canvas")).to_be_visible()
    expect(usage.locator(".usage-chart .plot")).to_have_attribute("aria-label", re.compile(r"^Cost \(USD\) per day"))
    expect(usage.locator(".usage-total")).to_contain_text("replica-hours in admin")
    usage.get_by_label("Chart").select_option("hours")
    expect(usage.locator(".usage-chart .plot")).to_have_attribute("aria-label", re.compile(r"^Replica-hours per day"))
    usage.get_by_label("Period").select_option("7")
    expect(row).to_be_visible()
    shoot(page, "account")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(row).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    shoot(page, "account-390")
    with api(serve) as client:
        client.delete(f"/v2/endpoint/admin/{name}")
