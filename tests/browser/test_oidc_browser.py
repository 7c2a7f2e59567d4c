"""Streamlit's OIDC sign-in (`st.login`) end to end in Chromium, against a real OpenID provider on a loopback
port (oidc-provider-mock: discovery, authorization form, code exchange, signed ID tokens): the identity's
email names the quotascope user, whose teams are all it sees; an identity with no user sees a refusal."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage.users import save_user
from tests.browser.conftest import RunningApp, free_port, screenshot
from tests.browser.test_sharing_browser import settled

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The OpenID provider as its own process (its Authlib calls warn of deprecations, which this test run
    turns into errors inside a server thread)."""
    port = free_port()
    log = tmp_path_factory.mktemp("provider") / "provider.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "oidc_provider_mock", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the OpenID provider did not start"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, demo_db: tuple[Path, Path], provider: str
) -> Iterator[RunningApp]:
    folder = tmp_path_factory.mktemp("oidc")
    db = folder / "shared.duckdb"
    shutil.copy(demo_db[0], db)
    save_user(
        db, "ops@example.com", ("legal", "support"), False, None, datetime.now(UTC).replace(tzinfo=None)
    )
    port = free_port()
    (folder / ".streamlit").mkdir()
    (folder / ".streamlit" / "secrets.toml").write_text(
        f"""[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "a-long-random-cookie-secret-for-this-test"
client_id = "quotascope"
client_secret = "quotascope-secret"
server_metadata_url = "{provider}/.well-known/openid-configuration"
"""
    )
    env = {"QUOTASCOPE_USER_CATALOG": str(demo_db[1]), "QUOTASCOPE_CURRENCY": "CNY", "HOME": str(folder)}
    running = RunningApp(db, env, cwd=folder, port=port)
    yield running
    running.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1500, "height": 1600})
    page = context.new_page()
    yield page
    context.close()


def sign_in_with_provider(page: Any, app: RunningApp, subject: str) -> str:
    page.goto(app.url, wait_until="networkidle")
    page.get_by_role("button", name="Sign in with your identity provider").click()
    page.get_by_placeholder("sub").fill(subject)  # the provider's own authorization form
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{app.url}/**", timeout=60_000)
    page.wait_for_selector('[data-testid="stHeading"]', timeout=90_000)
    settled(page)
    text: str = page.locator("body").inner_text()
    return text


def test_an_identity_sees_the_teams_of_its_user(page: Any, app: RunningApp, provider: str) -> None:
    put = httpx.put(f"{provider}/users/ops@example.com", json={"email": "ops@example.com"})
    assert put.status_code == 204
    text = sign_in_with_provider(page, app, "ops@example.com")
    assert "Signed in as ops@example.com" in text and "Sees: legal, support" in text
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]', has_text="Team").click()
    options = page.locator('[role="listbox"] [role="option"]')
    options.first.wait_for(timeout=30_000)
    assert [o.strip() for o in options.all_inner_texts()] == ["all", "legal", "support"]
    screenshot(page, "sharing-oidc-signed-in")


def test_an_identity_without_a_user_is_refused(page: Any, app: RunningApp, provider: str) -> None:
    httpx.put(f"{provider}/users/stranger@elsewhere.example", json={"email": "stranger@elsewhere.example"})
    text = sign_in_with_provider(page, app, "stranger@elsewhere.example")
    assert "may not see this dashboard" in text and "stranger@elsewhere.example" in text
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    assert "Overview" not in text
    screenshot(page, "sharing-oidc-refused")
