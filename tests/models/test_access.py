"""Who sees what and the sign-in rules, without a browser: scopes, names, session lifetime, back-off."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from models.access import (
    EVERYTHING,
    OVERALL,
    PER_NAME,
    Scope,
    SignInThrottle,
    User,
    oidc_providers,
    session_expired,
    team_names,
    user_name,
)
from models.errors import InputError

T0 = datetime(2026, 12, 7, 9, 0)


def test_a_scope_allows_its_teams_and_never_the_rows_with_no_team() -> None:
    lead = Scope.of(["support", "search", "search"])
    assert lead.teams == ("search", "support")
    assert lead.allows("search") and not lead.allows("legal") and not lead.allows(None)
    assert EVERYTHING.allows(None) and EVERYTHING.all_teams and not lead.all_teams
    assert lead.narrow(None) == ("search", "support")
    assert lead.narrow(("legal", "search")) == ("search",)
    assert EVERYTHING.narrow(("legal",)) == ("legal",) and EVERYTHING.narrow(None) is None
    assert Scope(()).narrow(None) == ()  # no viewer: nothing


def test_names_and_teams() -> None:
    assert user_name("  Ops@Example.COM ") == "ops@example.com"
    for bad in ("", "a b", "tab\there", "x" * 255, "nul\x00"):
        with pytest.raises(InputError):
            user_name(bad)
    assert team_names("search, support,search") == ("search", "support")
    with pytest.raises(InputError):
        team_names(" , ")
    with pytest.raises(InputError):
        User("x", (), False, True, T0)  # neither teams nor all teams
    with pytest.raises(InputError):
        User("x", ("a",), True, True, T0)
    assert User("f", (), True, False, T0).scope is EVERYTHING


def test_sessions_expire() -> None:
    assert not session_expired(T0, T0 + timedelta(hours=7, minutes=59), 8)
    assert session_expired(T0, T0 + timedelta(hours=8), 8)


def test_failures_wait_longer_and_longer_per_name() -> None:
    throttle = SignInThrottle()
    for i in range(PER_NAME.free_failures):
        assert throttle.wait_s("ann", T0) == 0, i
        throttle.failed("ann", T0)
    assert throttle.wait_s("ann", T0) == PER_NAME.first_wait_s
    throttle.failed("ann", T0)
    assert throttle.wait_s("ann", T0) == 2 * PER_NAME.first_wait_s
    assert throttle.wait_s("ann", T0 + timedelta(seconds=3)) == pytest.approx(2 * PER_NAME.first_wait_s - 3)
    assert throttle.wait_s("bob", T0) == 0  # another name is not held up
    for _ in range(30):
        throttle.failed("ann", T0)
    assert throttle.wait_s("ann", T0) == PER_NAME.max_wait_s
    assert throttle.wait_s("ann", T0 + timedelta(seconds=PER_NAME.forget_after_s)) == 0
    throttle.succeeded("ann")
    assert throttle.wait_s("ann", T0 + timedelta(seconds=1)) <= OVERALL.max_wait_s


def test_many_names_slow_everyone_but_briefly() -> None:
    throttle = SignInThrottle()
    for i in range(OVERALL.free_failures):
        throttle.failed(f"guess-{i}", T0)
    assert throttle.wait_s("carol", T0) == OVERALL.first_wait_s  # a name never tried before waits too
    for i in range(100):
        throttle.failed(f"more-{i}", T0)
    assert throttle.wait_s("carol", T0) == OVERALL.max_wait_s == 60


def test_oidc_providers_from_secrets() -> None:
    base = {"redirect_uri": "https://q/oauth2callback", "cookie_secret": "x" * 32}
    assert oidc_providers(None) == () and oidc_providers(base) == ()
    assert oidc_providers({**base, "client_id": "q"}) == ("default",)
    assert oidc_providers({**base, "okta": {"client_id": "q"}, "google": {"client_id": "g"}}) == (
        "google",
        "okta",
    )
    assert oidc_providers({"client_id": "q"}) == ()  # no redirect_uri and cookie_secret: st.login refuses
