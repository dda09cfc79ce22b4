"""The console in a real browser: signing in and out, the endpoint list updated live, the page's defences."""

from __future__ import annotations

import uuid

from playwright.sync_api import Page, expect

from tests.console.conftest import CHAT, api, shoot, sign_in
from tests.factories import ADMIN_TOKEN
from tests.fixtures.dais_serve import Serve

CPU = {"accelerator": "cpu", "instanceType": "cpu", "instanceSize": "x1"}


def create_body(name: str, **model: object) -> dict[str, object]:
    return {
        "name": name,
        "type": "authenticated",
        "provider": {"vendor": "local", "region": "local"},
        "compute": {**CPU, "scaling": {"minReplica": 1, "maxReplica": 1}},
        "model": {
            "repository": CHAT,
            "framework": "llamacpp",
            "task": "text-generation",
            "image": {"llamacpp": {}},
            **model,
        },
        "tags": ["console"],
    }


def test_the_page_is_served_with_a_strict_policy_and_no_token_anywhere(serve: Serve, page: Page) -> None:
    answer = page.goto(serve.url)
    assert answer is not None
    headers = answer.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    expect(page.get_by_role("heading", name="Sign in to Dais")).to_be_visible()
    expect(page.get_by_text("make serve")).to_be_visible()  # the page says how to get a token
    sign_in(page, serve)
    assert ADMIN_TOKEN not in page.url
    assert ADMIN_TOKEN not in page.content()
    assert not [c for c in page.context.cookies() if ADMIN_TOKEN in c["value"]]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Dais")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Sign in to Dais")).to_be_visible()  # forgotten


def test_a_bad_token_says_so(serve: Serve, page: Page) -> None:
    page.goto(serve.url)
    page.get_by_label("API token").fill("dais_not_a_token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown, expired or revoked")


def test_the_list_shows_each_endpoint_and_follows_changes_without_a_reload(serve: Serve, page: Page) -> None:
    name = f"c-{uuid.uuid4().hex[:8]}"
    with api(serve) as client:
        assert client.post("/v2/endpoint/admin", json=create_body(name)).status_code == 200
        sign_in(page, serve)
        row = page.locator(f'tr[data-name="{name}"]')
        expect(row).to_be_visible()
        expect(row).to_contain_text(CHAT)
        expect(row).to_contain_text("llamacpp")
        expect(row).to_contain_text("console")
        expect(row.locator(".badge")).to_have_text("running", timeout=120_000)
        shoot(page, "endpoints")
        marker = page.evaluate("() => (window.__stayed = 'yes')")
        assert client.post(f"/v2/endpoint/admin/{name}/pause").status_code == 200
        expect(row.locator(".badge")).to_have_text("paused", timeout=30_000)
        assert page.evaluate("() => window.__stayed") == marker  # the same page: no reload
        assert client.delete(f"/v2/endpoint/admin/{name}").status_code == 200
        expect(row).to_have_count(0, timeout=30_000)


def test_at_390_px_the_list_does_not_scroll_sideways(serve: Serve, page: Page) -> None:
    with api(serve) as client:
        for _ in range(2):
            assert client.post("/v2/endpoint/admin", json=create_body(f"c-{uuid.uuid4().hex[:8]}")).status_code == 200
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, serve)
    page.locator("tr[data-name]").first.wait_for()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    shoot(page, "endpoints-390")
