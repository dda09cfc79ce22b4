"""The console against ``dais serve`` on the local runtime, with tiny models made on the spot, in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.factories import ADMIN_TOKEN
from tests.fixtures.browser import ARTIFACTS, chromium
from tests.fixtures.dais_serve import Serve, dais_serve
from tests.fixtures.hub import HubServer
from tests.fixtures.models import tiny_llama_gguf

CHAT = "dais-test/tiny-chat"


@pytest.fixture(scope="package")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    models = tmp_path_factory.mktemp("models")
    with HubServer() as server:
        gguf = tiny_llama_gguf(models / "tiny-chat.gguf")
        server.add_model(CHAT, {"tiny-chat.gguf": gguf}, pipeline_tag="text-generation", library_name="gguf")
        yield server


@pytest.fixture(scope="package")
def serve(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    with dais_serve(hub, tmp_path_factory.mktemp("home")) as running:
        yield running


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context per test (no token kept from another); dialogs are recorded, never accepted."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    opened.dialogs = dialogs  # type: ignore[attr-defined]
    yield opened
    context.close()


def shoot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, serve: Serve) -> None:
    page.goto(serve.url)
    page.get_by_label("API token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Endpoints").wait_for()


def api(serve: Serve) -> httpx.Client:
    return httpx.Client(base_url=serve.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
