"""Sign-in: who is viewing, and the teams they may see. `dashboard/app.py` calls `require_viewer()` first.

Sign-in is on once a user exists (`quotascope users add`) or an identity provider is configured in
Streamlit's `.streamlit/secrets.toml` (`[auth]`, used by `st.login`). Then nothing but the sign-in form is
shown until the viewer signs in, a sign-in lasts `session_hours`, and failed attempts wait longer and
longer (`models.access.SignInThrottle`, per name and overall). Without either, the dashboard is open to
whoever reaches it, which `quotascope dashboard` allows on the loopback address only.

A viewer's scope comes from the users table on every run (cached on the data version), so `users remove`
or new teams take effect at the viewer's next click.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import streamlit as st

from models.access import (
    EVERYTHING,
    MAX_NAME_CHARS,
    Scope,
    SignInThrottle,
    User,
    oidc_providers,
    session_expired,
    user_name,
)
from models.errors import InputError, QuotascopeError
from quotascope import settings
from storage.users import check_sign_in, read_users

VIEWER_KEY = "quotascope_viewer"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: a user name (`open` when sign-in is off), how they signed in, and their scope."""

    name: str
    method: str  # "password", "oidc" or "open"
    signed_in_at: datetime
    scope: Scope


@st.cache_resource(show_spinner=False)
def _throttle() -> SignInThrottle:
    """One per dashboard process: every session's failures count together."""
    return SignInThrottle()


@st.cache_data(show_spinner=False, max_entries=8)
def _users(db: str, version: tuple[int, ...]) -> dict[str, User]:
    """Every user by name, re-read when the database changes."""
    return {user.name: user for user in read_users(Path(db))}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def providers() -> tuple[str, ...]:
    """The identity providers `.streamlit/secrets.toml` configures for `st.login` (none: no OIDC)."""
    try:
        auth = st.secrets.get("auth")
    except FileNotFoundError:  # no secrets.toml at all (Streamlit raises a FileNotFoundError subclass)
        return ()
    if auth is None:
        return ()
    return oidc_providers(auth.to_dict() if hasattr(auth, "to_dict") else auth)


def require_viewer(db: Path, version: tuple[int, ...]) -> Viewer:
    """The signed-in viewer; otherwise the sign-in form is shown and the run stops here."""
    try:
        users = _users(str(db), version)
    except QuotascopeError as e:
        st.error(f"Cannot read the dashboard's users: {e}")
        st.stop()
    oidc = providers()
    if not users and not oidc:
        return _remember(Viewer("open", "open", _now(), EVERYTHING))
    viewer = _current(oidc)
    if viewer is not None and session_expired(viewer.signed_in_at, _now(), _session_hours()):
        _sign_out(viewer, "Your session expired: sign in again.")
    refused = None
    if viewer is not None:
        user = users.get(viewer.name)
        if user is not None and (viewer.method != "password" or user.has_password):
            return _remember(replace(viewer, scope=user.scope))
        if viewer.method == "password":
            _sign_out(viewer, f"{viewer.name} may no longer see this dashboard.")
        refused = viewer.name
    st.session_state.pop(VIEWER_KEY, None)
    _sign_in_form(db, oidc, any(u.has_password for u in users.values()), refused)
    st.stop()


def _current(oidc: tuple[str, ...]) -> Viewer | None:
    """This session's password sign-in, else the identity provider's signed-in user (Streamlit's cookie)."""
    viewer: Viewer | None = st.session_state.get(VIEWER_KEY)
    if viewer is not None and viewer.method == "password":
        return viewer
    if oidc and st.user.get("is_logged_in"):
        return _oidc_viewer()
    return None


def _remember(viewer: Viewer) -> Viewer:
    st.session_state[VIEWER_KEY] = viewer
    return viewer


def _session_hours() -> float:
    return float(settings.get("session_hours"))


def _oidc_viewer() -> Viewer:
    """The identity provider's signed-in user, by email, or by subject (`sub`) when the provider sends no
    email or says it is not verified (anyone could otherwise claim finance's address at a provider that lets
    people type one in). Its ID token's `iat` is when they signed in, so Streamlit's cookie (kept 30 days)
    does not outlive `session_hours`."""
    email = st.user.get("email") if st.user.get("email_verified") is not False else None
    name = str(email or st.user.get("sub") or "").strip().lower()
    issued = st.user.get("iat")
    signed_in_at = (
        datetime.fromtimestamp(float(issued), UTC).replace(tzinfo=None)
        if isinstance(issued, (int, float)) and not isinstance(issued, bool)
        else _now()
    )
    return Viewer(name, "oidc", signed_in_at, Scope(()))


def _sign_out(viewer: Viewer | None, message: str | None = None) -> NoReturn:
    st.session_state.pop(VIEWER_KEY, None)
    if message:
        st.session_state["quotascope_sign_in_message"] = message
    if viewer is not None and viewer.method == "oidc":
        st.logout()
    st.rerun()


def _sign_in_form(db: Path, oidc: tuple[str, ...], local: bool, refused: str | None) -> None:
    st.title("quotascope")
    st.caption("Sign in to see your teams' usage and spend.")
    message = st.session_state.pop("quotascope_sign_in_message", None)
    if message:
        st.warning(message)
    if refused is not None:
        st.error(
            "This identity is signed in with the identity provider but may not see this dashboard: an "
            "administrator grants it with `quotascope users add NAME --teams ...` (NAME as below)."
        )
        st.text(refused or "(the provider gave no email)")
        if st.button("Sign out", key="sign_out_refused"):
            st.logout()
        return
    for provider in oidc:
        label = "Sign in with your identity provider" if provider == "default" else f"Sign in with {provider}"
        if st.button(label, key=f"sign_in_oidc_{provider}", type="primary"):
            st.login() if provider == "default" else st.login(provider)
    if not local:
        return
    with st.form("sign_in", clear_on_submit=True):
        name = st.text_input("Name", key="sign_in_name")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        _check(db, name, password)


def _check(db: Path, name: str, password: str) -> None:
    throttle, key, now = _throttle(), _throttle_key(name), _now()
    wait = throttle.wait_s(key, now)
    if wait > 0:
        st.error(f"Too many failed sign-ins: try again in {math.ceil(wait)} s.")
        return
    try:
        user = check_sign_in(db, name, password) if name and password else None
    except QuotascopeError as e:
        st.error(str(e))
        return
    if user is None:
        throttle.failed(key, now)
        st.error("Wrong name or password.")
        return
    throttle.succeeded(key)
    _remember(Viewer(user.name, "password", now, user.scope))
    st.rerun()


def _throttle_key(name: str) -> str:
    """The name as stored (so that another spelling of it, say in full-width letters, counts as the same
    name), or the text as typed when it cannot be a name."""
    try:
        return user_name(name)
    except InputError:
        return name[:MAX_NAME_CHARS]


def sign_out_button(viewer: Viewer) -> None:
    """The sidebar's line saying who is signed in and what they see, with a sign-out button."""
    if viewer.method == "open":
        return
    st.text(f"Signed in as {viewer.name}\nSees: {viewer.scope.describe()}")
    if st.button("Sign out", key="sign_out"):
        _sign_out(viewer)
