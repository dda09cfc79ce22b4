"""The create form in a real browser: the Hub lookup's suggestions, the hardware tiles, the equivalent request,
the API's errors next to their fields, keyboard-only use, and deploying from the catalog."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import CHAT, api, shoot, sign_in
from tests.factories import ADMIN_TOKEN
from tests.fixtures.dais_serve import Serve, dais_serve
from tests.fixtures.hub import HubServer

CPU_TILE = "local-local-cpu-x1"
RUNNING = 120_000  # ms: the tiny model starts in seconds; the first download and start get some slack
CATALOG = f"""
models:
  - repoId: {CHAT}
    modelName: Tiny Chat
    license: apache-2.0
    task: text-generation
    createdAt: 2026-01-15
    recipes:
      - publicId: tiny-chat-cpu
        accelerator: cpu
        engineType: llamacpp
        ggufFile: tiny-chat.gguf
        scaling: {{minReplica: 0, maxReplica: 2, scaleToZeroTimeout: 30}}
        type: authenticated
        env: {{LOG_LEVEL: debug}}
        options: {{ctxSize: 512}}
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def open_form(page: Page) -> None:
    page.locator('header a[href="#/new"]').click()
    expect(page.get_by_role("heading", name="New endpoint")).to_be_visible()


def look_up(page: Page, repository: str = CHAT) -> None:
    page.get_by_label("Model id (Hub)").fill(repository)
    expect(page.locator("#lookup")).to_contain_text("of weights", timeout=20_000)


def cleanup(serve: Serve, *names: str) -> None:
    with api(serve) as client:
        for name in names:
            client.delete(f"/v2/endpoint/admin/{name}")


def test_create_through_the_form_and_see_it_run(serve: Serve, page: Page) -> None:
    name = unique("form")
    sign_in(page, serve)
    open_form(page)
    look_up(page)
    lookup = page.locator("#lookup")
    expect(lookup).to_contain_text("text-generation")
    expect(lookup).to_contain_text("llamacpp (tiny-chat.gguf)")
    expect(lookup).to_contain_text("open")  # not gated
    # The lookup's suggestions fill the task and the engine.
    expect(page.get_by_label("Task", exact=True)).to_have_value("text-generation")
    expect(page.get_by_label("Engine", exact=True)).to_have_value("llamacpp")
    tile = page.locator("label.tile", has=page.locator(f'input[value="{CPU_TILE}"]'))
    expect(tile).to_contain_text("fits")
    expect(tile).to_contain_text("recommended")
    expect(tile).to_contain_text("$0.00/h")
    expect(tile).to_contain_text(re.compile(r"quota left \d+ of \d+"))
    expect(tile).to_have_class(re.compile(r"\brecommended\b"))
    tile.click()
    expect(page.locator(f'input[name="hardware"][value="{CPU_TILE}"]')).to_be_checked()
    page.get_by_label("Endpoint name").fill(name)
    page.get_by_label("Tags").fill("console, form")
    page.get_by_role("button", name="Add environment variable").click()
    page.get_by_label("Environment variables 1: name").fill("GREETING")
    page.get_by_label("Environment variables 1: value").fill("hello")
    page.get_by_role("button", name="Add secret").click()
    page.get_by_label("Secrets 1: name").fill("API_KEY")
    secret = page.get_by_label("Secrets 1: value")
    expect(secret).to_have_attribute("type", "password")
    secret.fill("s3cret-value")

    # The equivalent request follows the form, without the secret's value or the session's token.
    code = page.locator("pre.create-code")
    for text in (
        f'"name": "{name}"',
        f'"repository": "{CHAT}"',
        '"instanceType": "cpu"',
        '"accelerator": "cpu"',
        '"vendor": "local"',
        '"llamacpp": {}',
        '"GREETING": "hello"',
        '"API_KEY": "<secret value>"',
        '"console"',
        "/v2/endpoint/admin",
    ):
        expect(code).to_contain_text(text)
    assert code.inner_text().startswith("export DAIS=")
    page.get_by_label("huggingface_hub").check()
    expect(code).to_contain_text("api.create_inference_endpoint(")
    expect(code).to_contain_text(f'"{name}",')
    expect(code).to_contain_text('instance_type="cpu"')
    expect(code).to_contain_text('custom_image={"llamacpp": {}}')
    page.get_by_label("dais CLI").check()
    expect(code).to_contain_text("dais endpoints create admin <<'EOF'")
    # The command shown does what the form does: run as shown (another name), it creates the same endpoint.
    shown = code.inner_text()
    twin = f"{name}-cli"[:32]
    body = json.loads(shown.split("<<'EOF'\n", 1)[1].rsplit("\nEOF", 1)[0])
    assert body["name"] == name
    body["name"] = twin
    ran = subprocess.run(
        [sys.executable, "-m", "dais", "endpoints", "create", "admin"],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        env={**os.environ, "DAIS_URL": serve.url, "DAIS_TOKEN": ADMIN_TOKEN},
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"admin/{twin}: pending")
    with api(serve) as client:
        made = client.get(f"/v2/endpoint/admin/{twin}").json()
        assert (made["model"]["repository"], made["model"]["env"]) == (CHAT, {"GREETING": "hello"})
        assert client.delete(f"/v2/endpoint/admin/{twin}").status_code == 200
    page.get_by_label("curl", exact=True).check()
    text = code.inner_text()
    assert "s3cret-value" not in text
    assert ADMIN_TOKEN not in text
    shoot(page, "create")

    page.get_by_role("button", name="Create endpoint").click()
    expect(page).to_have_url(re.compile(rf"#/e/admin/{name}/overview$"))
    expect(page.locator("#endpoint-title")).to_have_text(name)
    expect(page.locator(".toolbar .badge")).to_have_text("running", timeout=RUNNING)
    with api(serve) as client:
        created = client.get(f"/v2/endpoint/admin/{name}").json()
    assert created["model"]["env"] == {"GREETING": "hello"}
    assert created["model"]["secrets"] == {"API_KEY": "**redacted**"}
    assert created["tags"] == ["console", "form"]
    assert created["compute"]["instanceType"] == "cpu"
    cleanup(serve, name)


def test_the_apis_errors_appear_next_to_their_fields(serve: Serve, page: Page) -> None:
    sign_in(page, serve)
    open_form(page)
    look_up(page)
    page.get_by_label("Endpoint name").fill(unique("bad"))
    page.get_by_label("Min replicas").fill("3")
    page.get_by_label("Max replicas").fill("1")
    page.get_by_role("button", name="Create endpoint").click()
    scaling = page.locator("#scaling .field-error")
    expect(scaling).to_contain_text("minReplica (3) is above maxReplica (1): lower minReplica or raise maxReplica")
    expect(page.get_by_label("Min replicas")).to_have_attribute("aria-invalid", "true")
    banner = page.locator("#create-error")
    expect(banner).to_contain_text("The endpoint was not created")
    expect(banner).to_be_focused()
    expect(page).to_have_url(re.compile(r"#/new$"))
    shoot(page, "create-errors")

    # A name the API refuses, and an unknown model: each message under its own field, the old ones gone.
    page.get_by_label("Min replicas").fill("1")
    page.get_by_label("Model id (Hub)").fill("dais-test/no-such-model")
    expect(page.locator("#lookup")).to_contain_text("not found on the Hub")  # said before submitting
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.locator("#err-model-repository")).to_contain_text("model dais-test/no-such-model not found on the Hub")
    expect(page.get_by_label("Model id (Hub)")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#scaling .field-error")).to_have_count(0)
    page.get_by_label("Model id (Hub)").fill(CHAT)
    page.get_by_label("Endpoint name").fill("Not A Name")
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.locator("#err-name")).to_contain_text("use 1-32 lowercase letters, digits and '-'")
    expect(page.locator("#err-model-repository")).to_have_count(0)
    assert not page.dialogs  # type: ignore[attr-defined]


def tab_to(page: Page, selector: str, limit: int = 80) -> None:
    """Presses Tab until the focused element matches ``selector``: the keyboard's way to a control."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => !!document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_keyboard_only_create(serve: Serve, page: Page) -> None:
    name = unique("keys")
    page.goto(serve.url)
    tab_to(page, "#token")
    page.keyboard.type(ADMIN_TOKEN)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    tab_to(page, 'header a[href="#/new"]')
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New endpoint")).to_be_visible()
    tab_to(page, "#f-repository")
    page.keyboard.type(CHAT)
    expect(page.locator("#lookup")).to_contain_text("of weights", timeout=20_000)
    tab_to(page, "#f-name")
    page.keyboard.type(name)
    tab_to(page, 'input[name="hardware"]')
    page.keyboard.press("Space")
    expect(page.locator(f'input[name="hardware"][value="{CPU_TILE}"]')).to_be_checked()
    tab_to(page, "#f-max")
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    tab_to(page, "#f-type")
    page.keyboard.press("ArrowDown")  # private → authenticated
    expect(page.locator("#f-type")).to_have_value("authenticated")
    tab_to(page, "#rows-env button")
    page.keyboard.press("Enter")
    tab_to(page, '[aria-label="Environment variables 1: name"]')
    page.keyboard.type("MODE")
    page.keyboard.press("Tab")
    page.keyboard.type("keyboard")
    expect(page.locator("pre.create-code")).to_contain_text('"MODE": "keyboard"')
    tab_to(page, 'button[type="submit"]')
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"#/e/admin/{name}/overview$"))
    expect(page.locator(".toolbar .badge")).to_have_text("running", timeout=RUNNING)
    with api(serve) as client:
        created = client.get(f"/v2/endpoint/admin/{name}").json()
    assert created["compute"]["scaling"]["maxReplica"] == 2
    assert created["type"] == "authenticated"
    assert created["model"]["env"] == {"MODE": "keyboard"}
    cleanup(serve, name)


@pytest.fixture(scope="module")
def catalog_serve(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """``dais serve`` with a catalog whose model the test Hub has (the shipped catalog's are on the real Hub)."""
    home = tmp_path_factory.mktemp("catalog-home")
    catalog = Path(home) / "models.yaml"
    catalog.write_text(CATALOG, encoding="utf-8")
    with dais_serve(hub, home, DAIS_MODEL_CATALOG=str(catalog)) as running:
        yield running


def test_deploy_from_catalog_fills_the_form(catalog_serve: Serve, page: Page) -> None:
    sign_in(page, catalog_serve)
    open_form(page)
    page.get_by_text("Deploy from catalog").click()
    page.get_by_label("Search the catalog").fill("tiny")
    recipe = page.locator('button[data-recipe="tiny-chat-cpu"]')
    expect(recipe).to_contain_text("cpu · llamacpp · tiny-chat.gguf")
    shoot(page, "create-catalog")
    recipe.click()
    expect(page.get_by_role("status").filter(has_text="Filled from the catalog")).to_contain_text("tiny-chat-cpu")
    expect(page.get_by_label("Model id (Hub)")).to_have_value(CHAT)
    expect(page.get_by_label("Endpoint name")).to_have_value(re.compile(r"^tiny-chat-[a-z0-9]{4}$"))
    expect(page.get_by_label("Task", exact=True)).to_have_value("text-generation")
    expect(page.get_by_label("Engine", exact=True)).to_have_value("llamacpp")
    expect(page.get_by_label("GGUF file")).to_have_value("tiny-chat.gguf")
    expect(page.get_by_label("Min replicas")).to_have_value("0")
    expect(page.get_by_label("Max replicas")).to_have_value("2")
    expect(page.get_by_label("Scale to zero after")).to_have_value("30")
    expect(page.locator("#f-type")).to_have_value("authenticated")
    expect(page.get_by_label("Environment variables 1: name")).to_have_value("LOG_LEVEL")
    expect(page.get_by_label("Environment variables 1: value")).to_have_value("debug")
    expect(page.get_by_label("Engine options 1: name")).to_have_value("ctxSize")
    expect(page.get_by_label("Engine options 1: value")).to_have_value("512")
    expect(page.locator(f'input[name="hardware"][value="{CPU_TILE}"]')).to_be_checked()
    code = page.locator("pre.create-code")
    expect(code).to_contain_text('"llamacpp": {\n        "ctxSize": 512,\n        "modelPath": "tiny-chat.gguf"')
    expect(code).to_contain_text('"scaleToZeroTimeout": 30')
    name = page.get_by_label("Endpoint name").input_value()
    page.get_by_role("button", name="Create endpoint").click()
    expect(page).to_have_url(re.compile(rf"#/e/admin/{name}/overview$"))
    with api(catalog_serve) as client:
        created = client.get(f"/v2/endpoint/admin/{name}").json()
        assert created["model"]["image"] == {"llamacpp": {"ctxSize": 512, "modelPath": "tiny-chat.gguf"}}
        assert created["model"]["env"] == {"LOG_LEVEL": "debug"}
        assert created["compute"]["scaling"]["scaleToZeroTimeout"] == 30
        client.delete(f"/v2/endpoint/admin/{name}")


def test_at_390_px_the_form_does_not_scroll_sideways(serve: Serve, page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, serve)
    page.goto(f"{serve.url}/#/new")
    look_up(page)
    page.get_by_role("button", name="Add secret").click()
    expect(page.locator(f'input[value="{CPU_TILE}"]')).to_be_checked()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    shoot(page, "create-390")
