"""Sign-in and scoping from the entrypoint (AppTest) on a copy of the demo database with users: nothing before
sign-in, a team lead's every view and filter holds their team only, finance sees all, failures back off,
sessions expire, OIDC identities map to users by email; and the rule that every view read is scoped.

What a viewer sees of usage is checked with the demo's usage in the DuckDB file and in chdb (`scoped`), each
figure against the DuckDB file's own read; sign-in, sessions and OIDC decide from the users table in the
DuckDB file before any usage is read, so they run on the file alone."""

from __future__ import annotations

import ast
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import state
from dashboard.auth import VIEWER_KEY
from models.access import Scope
from storage.catalog import load_catalog
from storage.explore import usage_dimensions
from storage.probes import probe_runs
from storage.replay import UsageFilter
from storage.reports import spend_report
from storage.store import Store
from storage.users import remove_user, save_user

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
VIEWS = sorted(p.name for p in (ROOT / "dashboard" / "views").glob("*.py"))
LEAD_PASSWORD = "search-lead-password"
FINANCE_PASSWORD = "finance-sees-everything"
TEAMS = ("batch-eval", "docs-qa", "legal", "research", "search", "support")


@pytest.fixture
def shared(tmp_path: Path, demo_db: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo database copied, with a team lead (search), finance (all teams) and an OIDC-only user."""
    db = tmp_path / "shared.duckdb"
    shutil.copy(demo_db[0], db)
    now = datetime.now(UTC).replace(tzinfo=None)
    save_user(db, "lead", ("search",), False, LEAD_PASSWORD, now)
    save_user(db, "finance", (), True, FINANCE_PASSWORD, now)
    save_user(db, "Ops@Example.com", ("support", "legal"), False, None, now)
    monkeypatch.setenv("QUOTASCOPE_DB", str(db))
    monkeypatch.setenv("QUOTASCOPE_CURRENCY", "CNY")
    monkeypatch.setenv("QUOTASCOPE_USER_CATALOG", str(demo_db[1]))
    return db


@pytest.fixture
def scoped(shared: Path, demo_store: Store) -> Path:
    """`shared`, its usage read from the DuckDB file and from chdb (`demo_store` names it in
    QUOTASCOPE_STORE; the users stay in the copied file): the DuckDB file of it, for the expected figures."""
    return shared


def fresh() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_password").input(password)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def team_options(at: AppTest) -> list[str]:
    return list(at.selectbox(key="filter_team").options)


def test_nothing_is_shown_before_sign_in(shared: Path) -> None:
    at = fresh()
    assert [t.value for t in at.title] == ["quotascope"]
    assert not at.header and not at.metric and not at.dataframe  # no view ran
    assert not at.sidebar.selectbox  # no filters: the team names are not offered
    assert at.text_input(key="sign_in_password")


def test_a_wrong_password_is_refused(shared: Path) -> None:
    at = sign_in(fresh(), "lead", "not the password at all")
    assert errors(at) == ["Wrong name or password."]
    assert not at.header
    at = sign_in(fresh(), "nobody", LEAD_PASSWORD)
    assert errors(at) == ["Wrong name or password."]


def test_a_team_lead_sees_their_team_only(scoped: Path, demo_db: tuple[Path, Path]) -> None:
    at = sign_in(fresh(), "LEAD", LEAD_PASSWORD)  # names are not case-sensitive
    assert team_options(at) == ["all", "search"]
    assert list(at.selectbox(key="filter_model").options) == ["all", "deepseek-v4-pro"]
    catalog = load_catalog(ROOT / "data" / "catalog", [demo_db[1]])
    mine = spend_report(scoped, catalog, UsageFilter(team="search"), (), "CNY")[0]
    at.switch_page("views/spend.py").run()
    assert not at.exception, at.exception
    for by in ("team", "provider", "model", "project", "key"):
        at.segmented_control(key="spend_by").set_value(by).run()
        table = at.dataframe[-1].value
        assert int(table["Requests"].sum()) == mine.requests, by
        if by == "team":
            assert set(table["Team"]) == {"search"}
        if by == "key":
            assert all(k.startswith("key-search-") for k in table["Key"])
        if by == "project":
            assert set(table["Project"]) == {"web-answers"}
    for view in VIEWS:
        at.switch_page(f"views/{view}").run()
        assert not at.exception, (view, at.exception)
        text = page_text(at)
        for other in set(TEAMS) - {"search"}:
            assert f"key-{other}" not in text and f"team={other}" not in text, (view, other)
        if view == "spend.py":  # the only budget a lead sees is their team's: no total, no other team's
            assert list(at.selectbox(key="spend_budget").options) == ["team=search"]
        assert len(text) > 200, view  # the view showed something to search in


def page_text(at: AppTest) -> str:
    """What a view shows: headers, text, metrics, alerts and every table cell."""
    parts = [
        str(e.value)
        for kind in ("header", "caption", "markdown", "warning", "info", "error")
        for e in getattr(at, kind)
    ]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [d.value.to_csv() for d in at.dataframe]
    parts += [" ".join(map(str, s.options)) for s in at.selectbox]
    return "\n".join(parts)


def test_finance_sees_every_team(scoped: Path, demo_store: Store) -> None:
    at = sign_in(fresh(), "finance", FINANCE_PASSWORD)
    where = " ".join(c.value for c in at.sidebar.caption)  # a lead is not told where the data is; finance is
    assert ("chdb://" in where) == (demo_store.clickhouse is not None), where
    assert team_options(at) == ["all", *TEAMS]
    at.switch_page("views/spend.py").run()
    assert set(at.dataframe[-1].value["Team"]) == set(TEAMS)


def test_overview_figures_are_the_teams_own(
    scoped: Path, demo_db: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the page's "now" pinned after the demo's last request (the demo writes traffic up to the instant it
    # ran; the page's own clock, in whole minutes, would leave out that last minute)
    now = datetime.now() + timedelta(minutes=5)
    monkeypatch.setenv("QUOTASCOPE_NOW", now.isoformat())
    at = sign_in(fresh(), "lead", LEAD_PASSWORD)
    requests = int(next(m.value for m in at.metric if m.label == "Requests").replace(",", ""))
    since = datetime.combine(now.date().replace(day=1), datetime.min.time())
    catalog = load_catalog(ROOT / "data" / "catalog", [demo_db[1]])
    [mine] = spend_report(scoped, catalog, UsageFilter(since, now, team="search"), (), "CNY")
    assert requests == mine.requests
    budgets = [m.value for m in at.metric if m.label == "Budget used"]
    assert budgets and budgets[0] != "—"  # search's own budget stands in for the total it may not see
    assert "2,000.00 CNY" in str(next(m.delta for m in at.metric if m.label == "Budget used"))


def test_failures_back_off_per_name(shared: Path) -> None:
    at = fresh()
    for _ in range(3):
        sign_in(at, "finance", "guess-guess-guess")
        assert errors(at) == ["Wrong name or password."]
    sign_in(at, "finance", FINANCE_PASSWORD)  # right, but too soon after three failures
    assert errors(at)[0].startswith("Too many failed sign-ins: try again in")
    assert not at.header
    sign_in(at, " ＦＩＮＡＮＣＥ ", FINANCE_PASSWORD)  # another spelling of the name is the same name
    assert errors(at)[0].startswith("Too many failed sign-ins")
    sign_in(at, "lead", LEAD_PASSWORD)  # another name is not held up by finance's failures
    assert at.header


def test_a_session_expires(shared: Path) -> None:
    at = sign_in(fresh(), "lead", LEAD_PASSWORD)
    viewer = at.session_state[VIEWER_KEY]
    at.session_state[VIEWER_KEY] = type(viewer)(
        viewer.name, viewer.method, viewer.signed_in_at - timedelta(hours=9), viewer.scope
    )
    at.run()
    assert "Your session expired: sign in again." in [w.value for w in at.warning]
    assert not at.header


def test_a_removed_user_is_signed_out_at_the_next_click(shared: Path) -> None:
    at = sign_in(fresh(), "lead", LEAD_PASSWORD)
    assert at.header
    save_user(shared, "lead", ("search", "legal"), False, LEAD_PASSWORD, datetime.now())
    at.run()
    assert team_options(at) == ["all", "legal", "search"]  # new teams at the next click
    save_user(shared, "lead", ("search",), False, None, datetime.now())  # now signs in through OIDC only
    at.run()
    assert not at.header
    at = sign_in(fresh(), "lead", LEAD_PASSWORD)
    assert not at.header
    save_user(shared, "lead", ("search",), False, LEAD_PASSWORD, datetime.now())
    at = sign_in(fresh(), "lead", LEAD_PASSWORD)
    assert at.header
    remove_user(shared, "lead")
    at.run()
    assert not at.header
    assert any("may no longer see" in w.value for w in at.warning)


def oidc_app(email: str, signed_in_hours_ago: float = 0, **claims: object) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "a-long-random-secret-for-tests",
        "client_id": "quotascope",
        "client_secret": "not-used-here",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    issued = datetime.now(UTC) - timedelta(hours=signed_in_hours_ago)
    at.user = {"is_logged_in": True, "email": email, "iat": issued.timestamp(), **claims}
    at.run()
    assert not at.exception, at.exception
    return at


def test_an_oidc_identity_maps_to_its_user_by_email(shared: Path) -> None:
    at = oidc_app("ops@example.com")
    assert team_options(at) == ["all", "legal", "support"]
    assert oidc_app("ops@example.com", email_verified=True).header
    # an address the provider has not verified names nobody: the subject does, and it is no user here
    unverified = oidc_app("ops@example.com", email_verified=False, sub="user-4711")
    assert not unverified.header and "user-4711" in [t.value for t in unverified.text]
    stranger = oidc_app("someone@elsewhere.example")
    assert not stranger.header
    assert "someone@elsewhere.example" in [t.value for t in stranger.text]


def test_an_oidc_session_ends_session_hours_after_the_provider_signed_in(shared: Path) -> None:
    assert oidc_app("ops@example.com", signed_in_hours_ago=7.9).header
    old = oidc_app("ops@example.com", signed_in_hours_ago=8.1)  # Streamlit's cookie would last 30 days
    assert not old.header and not old.sidebar.selectbox


def test_oidc_alone_turns_sign_in_on(
    tmp_path: Path, demo_db: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "no-users.duckdb"
    shutil.copy(demo_db[0], db)
    monkeypatch.setenv("QUOTASCOPE_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "a-long-random-secret-for-tests",
        "client_id": "quotascope",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.header
    assert [b.label for b in at.button] == ["Sign in with your identity provider"]


# ------------------------------------------------------------------------------------------ the rule


def test_read_cuts_every_selection_down_to_the_scope() -> None:
    lead = Scope.of(["search"])
    assert state.scoped(usage_dimensions, {}, lead)["selection"].teams == ("search",)
    asked = {"selection": UsageFilter(team="support")}
    cut = state.scoped(usage_dimensions, asked, lead)["selection"]
    assert cut.teams == ("search",) and cut.team == "support"  # asks for support within search: nothing
    assert state.scoped(usage_dimensions, {}, Scope())["selection"].teams is None
    assert state.scoped(probe_runs, {"since": None}, lead) == {"since": None}  # team-free


def test_a_read_without_selection_is_refused() -> None:
    def per_team_totals(db: Path) -> None: ...

    with pytest.raises(state.ScopeError, match="takes no `selection`"):
        state.scoped(per_team_totals, {}, Scope())


def test_a_scoped_selection_reads_its_teams_only(demo_db: tuple[Path, Path], demo_store: Store) -> None:
    db = demo_store
    everything = usage_dimensions(db)
    assert everything.teams == TEAMS
    assert usage_dimensions(db, UsageFilter().within(Scope.of(["legal", "search"]))).teams == (
        "legal",
        "search",
    )
    assert usage_dimensions(db, UsageFilter().within(Scope(()))).requests == 0
    catalog = load_catalog(ROOT / "data" / "catalog", [demo_db[1]])
    [legal] = spend_report(db, catalog, UsageFilter().within(Scope.of(["legal"])), (), "CNY")
    [alone] = spend_report(db, catalog, UsageFilter(team="legal"), (), "CNY")
    assert legal.requests == alone.requests and legal.cost == alone.cost
    assert (legal.cost.amount if legal.cost else Decimal(0)) > 0
    [file] = spend_report(demo_db[0], catalog, UsageFilter().within(Scope.of(["legal"])), (), "CNY")
    assert legal.to_json() == file.to_json()  # and either store's answer is the DuckDB file's


def test_views_read_storage_only_through_state_read() -> None:
    """A view calling a storage read itself would skip the scope; it may only pass it to `state.read` (or
    call it inside a helper that takes the `selection` state.read scopes)."""
    for view in VIEWS:
        tree = ast.parse((ROOT / "dashboard" / "views" / view).read_text())
        reads = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("storage")
            for alias in node.names
            if alias.name[:1].islower()
        }
        for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            takes_selection = "selection" in {a.arg for a in func.args.args + func.args.kwonlyargs}
            for call in ast.walk(func):
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in reads:
                    assert takes_selection, f"{view}: {func.name} calls {call.func.id} outside state.read"
