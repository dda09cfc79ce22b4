"""The endpoint page in a real browser: the playground streaming a chat reply through the gateway, pause and
resume confirmed in dialogs, settings saved with If-Match and the conflict when someone else changed it, the
audit trail with its diffs, user values rendered as text, and a delete with the keyboard alone."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import api, shoot, sign_in
from tests.console.test_console import create_body
from tests.factories import ADMIN_TOKEN
from tests.fixtures.dais_serve import Serve

XSS = "<img src=x onerror=alert(1)>"
STARTED = 120_000  # ms: a replica of the tiny model starts in seconds; a busy machine may take longer


def endpoint(client: httpx.Client, **model: Any) -> str:
    name = f"p-{uuid.uuid4().hex[:8]}"
    answer = client.post("/v2/endpoint/admin", json=create_body(name, **model))
    assert answer.status_code == 200, answer.text
    return name


def open_page(page: Page, serve: Serve, name: str, tab: str = "overview") -> None:
    page.goto(f"{serve.url}/#/e/admin/{name}/{tab}")
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()


def badge(page: Page) -> Any:
    return page.locator("section[aria-labelledby=endpoint-title] > .toolbar .badge")


def test_the_page_may_connect_to_the_gateway_and_nowhere_else(serve: Serve) -> None:
    policy = httpx.get(serve.url).headers["content-security-policy"]
    assert f"connect-src 'self' {serve.gateway};" in policy
    assert "script-src 'self';" in policy


def test_the_playground_streams_a_chat_reply_through_the_gateway(serve: Serve, page: Page) -> None:
    with api(serve) as client:
        name = endpoint(client)
        url = f"{serve.gateway}/admin/{name}"
        sign_in(page, serve)
        open_page(page, serve, name)
        expect(badge(page)).to_have_text("running", timeout=STARTED)
        expect(page.locator("dl.about")).to_contain_text(url)
        expect(page.locator("dl.about")).to_contain_text("$0.00 per replica")
        shoot(page, "overview")

        page.get_by_role("link", name="Playground").click()
        expect(page.get_by_role("heading", name="Playground")).to_be_visible()
        snippet = page.locator(".snippets")
        expect(snippet).to_contain_text(f"curl -N {url}/v1/chat/completions")
        expect(snippet).to_contain_text(f'base_url="{url}/v1"')
        # Every text the streaming reply shows, as the page shows it: it grows token by token.
        page.evaluate(
            """() => {
              window.__seen = [];
              new MutationObserver(() => {
                const text = document.querySelector('.chat .msg.streaming .text');
                if (text) window.__seen.push(text.textContent.length);
              }).observe(document.querySelector('.chat'), {subtree: true, childList: true, characterData: true});
            }"""
        )
        # The tiny model writes its whole reply within one network read on loopback: a slow network spreads it.
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        slow = {"offline": False, "latency": 0, "downloadThroughput": 4000, "uploadThroughput": -1}
        cdp.send("Network.emulateNetworkConditions", slow)
        page.get_by_label("Message", exact=True).fill("Tell me a long story about a fox.")
        page.get_by_role("button", name="Send").click()
        reply = page.locator(".chat .msg.assistant:not(.streaming)")
        expect(reply).to_have_count(1, timeout=60_000)
        cdp.send("Network.emulateNetworkConditions", {**slow, "downloadThroughput": -1})
        chunks = int(reply.get_attribute("data-chunks") or 0)
        assert chunks > 1, "the reply arrived in one piece: not streamed"
        seen = page.evaluate("() => window.__seen")
        assert len({n for n in seen if n > 0}) > 1, f"the reply was not shown as it grew: {seen}"
        assert reply.locator(".text").inner_text().strip()
        expect(snippet).to_contain_text("Tell me a long story about a fox.")  # the snippet is the same call
        assert ADMIN_TOKEN not in page.content()  # the snippet reads $DAIS_TOKEN
        shoot(page, "playground")
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_pause_and_resume_are_confirmed_and_the_badge_follows_without_a_reload(serve: Serve, page: Page) -> None:
    with api(serve) as client:
        name = endpoint(client)
        sign_in(page, serve)
        open_page(page, serve, name)
        expect(badge(page)).to_have_text("running", timeout=STARTED)
        marker = page.evaluate("() => (window.__stayed = 'yes')")

        page.get_by_role("button", name="Pause", exact=True).click()
        dialog = page.get_by_role("dialog", name="Pause this endpoint?")
        expect(dialog).to_be_visible()
        dialog.get_by_role("button", name="Cancel").click()  # cancelled: nothing happens
        expect(dialog).to_have_count(0)
        assert client.get(f"/v2/endpoint/admin/{name}").json()["status"]["state"] == "running"

        page.get_by_role("button", name="Pause", exact=True).click()
        page.get_by_role("dialog").get_by_role("button", name=f"Pause {name}").click()
        expect(badge(page)).to_have_text("paused", timeout=30_000)
        expect(page.get_by_role("button", name="Pause", exact=True)).to_be_disabled()

        page.get_by_role("button", name="Resume", exact=True).click()
        page.get_by_role("dialog", name="Resume this endpoint?").get_by_role("button", name=f"Resume {name}").click()
        expect(badge(page)).not_to_have_text("paused", timeout=30_000)
        expect(badge(page)).to_have_text("running", timeout=STARTED)
        assert page.evaluate("() => window.__stayed") == marker  # the same page all along
        actions = [e["action"] for e in client.get(f"/v2/endpoint/admin/{name}/events").json()["items"]]
        assert actions[:2] == ["endpoint.resume", "endpoint.pause"]
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_settings_are_saved_with_if_match_and_a_conflict_says_what_changed(serve: Serve, page: Page) -> None:
    with api(serve) as client:
        name = endpoint(client)
        sign_in(page, serve)
        open_page(page, serve, name, "settings")
        page.get_by_label("Max replicas").fill("2")
        page.get_by_label("Tags (comma-separated)").fill("console, edited")
        page.get_by_role("button", name="Save changes").click()
        expect(page.locator(".saved")).to_contain_text("Saved")
        stored = client.get(f"/v2/endpoint/admin/{name}").json()
        assert stored["compute"]["scaling"]["maxReplica"] == 2
        assert stored["tags"] == ["console", "edited"]

        # The API's message about a field shows next to that field.
        page.get_by_label("Max replicas").fill("999")
        page.get_by_role("button", name="Save changes").click()
        expect(page.locator("#set-max-error")).to_contain_text("at most 64")
        expect(page.get_by_label("Max replicas")).to_have_attribute("aria-describedby", "set-max-error")

        # Someone else changes it while this form is being edited: the save is refused and says what changed.
        page.get_by_label("Max replicas").fill("3")
        changed = client.put(f"/v2/endpoint/admin/{name}", json={"tags": ["changed-elsewhere"]})
        assert changed.status_code == 200, changed.text
        page.get_by_role("button", name="Save changes").click()
        conflict = page.locator(".conflict")
        expect(conflict).to_contain_text("someone else changed this endpoint")
        expect(conflict.locator(".diff li")).to_have_count(1)
        expect(conflict.locator(".diff li")).to_have_text('tags: ["console","edited"] → ["changed-elsewhere"]')
        shoot(page, "settings")
        assert client.get(f"/v2/endpoint/admin/{name}").json()["compute"]["scaling"]["maxReplica"] == 2

        # Keeping the edits moves them onto the new version: their tags stay, the new maximum is saved.
        page.get_by_role("button", name="Keep my edits on top of theirs").click()
        expect(page.get_by_label("Tags (comma-separated)")).to_have_value("changed-elsewhere")
        page.get_by_role("button", name="Save changes").click()
        expect(page.locator(".saved")).to_contain_text("Saved")
        stored = client.get(f"/v2/endpoint/admin/{name}").json()
        assert stored["compute"]["scaling"]["maxReplica"] == 3
        assert stored["tags"] == ["changed-elsewhere"]
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_the_events_tab_lists_the_audit_trail_with_diffs_a_page_at_a_time(serve: Serve, page: Page) -> None:
    with api(serve) as client:
        name = endpoint(client)
        path = f"/v2/endpoint/admin/{name}"
        assert client.put(path, json={"compute": {"scaling": {"maxReplica": 2}}}).status_code == 200
        assert client.post(f"{path}/pause").status_code == 200
        sign_in(page, serve)
        open_page(page, serve, name, "events")
        events = page.locator("li.event")
        expect(events).to_have_count(3)
        expect(events.nth(0)).to_have_attribute("data-action", "endpoint.pause")
        expect(events.nth(0)).to_contain_text("paused: false → true")
        expect(events.nth(1)).to_have_attribute("data-action", "endpoint.update")
        expect(events.nth(1)).to_contain_text("compute.scaling.maxReplica: 1 → 2")
        expect(events.nth(2)).to_have_attribute("data-action", "endpoint.create")
        expect(events.nth(2)).to_contain_text('model.repository: unset → "dais-test/tiny-chat"')
        expect(events.nth(0)).to_contain_text("by admin")
        expect(events.nth(0).locator("time")).to_have_attribute("title", re.compile(r"UTC$"))
        shoot(page, "events")

        # A change while the tab is open shows on top; older events come a page (20) at a time.
        for i in range(20):
            assert client.put(path, json={"tags": [f"t{i}"]}).status_code == 200
        assert client.post(f"{path}/resume").status_code == 200
        expect(events.nth(0)).to_have_attribute("data-action", "endpoint.resume", timeout=30_000)
        page.reload()
        expect(events).to_have_count(20)
        page.get_by_role("button", name="Load more").click()
        expect(events).to_have_count(24)
        expect(page.get_by_role("button", name="Load more")).to_have_count(0)
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_user_values_render_as_text_and_open_no_dialog(serve: Serve, page: Page) -> None:
    with api(serve) as client:
        name = endpoint(client, env={"GREETING": XSS})
        changed = client.put(f"/v2/endpoint/admin/{name}", json={"model": {"env": {"GREETING": XSS, "B": XSS}}})
        assert changed.status_code == 200, changed.text
        sign_in(page, serve)
        open_page(page, serve, name, "settings")
        expect(page.get_by_label("Variable 1 value")).to_have_value(XSS)
        page.get_by_role("link", name="Events").click()
        expect(page.locator("li.event")).to_have_count(2)
        expect(page.locator("li.event").first).to_contain_text(f'model.env.B: unset → "{XSS}"')
        assert page.locator('img[src="x"]').count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_an_endpoint_is_deleted_with_the_keyboard_alone(serve: Serve, page: Page) -> None:
    with api(serve) as client:
        name = endpoint(client)
        page.goto(serve.url)
        page.get_by_label("API token").fill(ADMIN_TOKEN)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
        page.goto(f"{serve.url}/#/e/admin/{name}/overview")
        expect(page.get_by_role("button", name="Delete", exact=True)).to_be_visible()

        def focused() -> str:
            return str(page.evaluate("() => document.activeElement?.textContent?.trim() ?? ''"))

        for _ in range(60):
            page.keyboard.press("Tab")
            if focused() == "Delete":
                break
        else:
            pytest.fail("Tab never reached the Delete button")
        page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Delete this endpoint?")
        expect(dialog).to_be_visible()
        assert page.evaluate("() => document.activeElement.id") == "confirm-name"  # focus moved into the dialog
        page.keyboard.press("Escape")  # closes it, and focus returns to the button that opened it
        expect(dialog).to_have_count(0)
        assert focused() == "Delete"
        page.keyboard.press("Space")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("button", name=f"Delete {name}")).to_be_disabled()  # until the name is typed
        page.keyboard.type(name)
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"#/ns/admin$"), timeout=30_000)
        expect(page.locator(f'tr[data-name="{name}"]')).to_have_count(0)
        assert client.get(f"/v2/endpoint/admin/{name}").status_code == 404
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_at_390_px_no_tab_scrolls_sideways(serve: Serve, page: Page) -> None:
    with api(serve) as client:
        name = endpoint(client, env={"A_LONG_VARIABLE_NAME": "a-long-value-" * 8})
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, serve)
    open_page(page, serve, name)
    expect(badge(page)).to_have_text("running", timeout=STARTED)
    for tab, shows in (
        ("overview", "dl.about"),
        ("playground", ".snippets"),
        ("settings", "form.settings"),
        ("events", "li.event"),
    ):
        page.get_by_role("link", name=tab.title(), exact=True).click()
        expect(page.locator(shows).first).to_be_visible()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, tab
        shoot(page, f"{tab}-390")
