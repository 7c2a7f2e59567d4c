"""Who may see what, and the rules of signing in.

A dashboard user sees the usage of their teams only (`Scope`), or everything (`--all-teams`). Usage rows
with no team belong to no team lead: only an all-teams scope sees them. Signing in follows three rules kept
here so they are tested without a browser: a name is a local name or an identity provider's email, compared
in lower case (`user_name`); a session lasts `session_hours` at most (`session_expired`); failed attempts
buy an exponentially growing wait, per name and overall (`SignInThrottle`), so guessing passwords is slow
even across many names.

Pure: the dashboard applies these rules, `storage.users` keeps the users and their password hashes.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from models.errors import InputError

MAX_NAME_CHARS = 254  # the longest email address (RFC 5321 path limit)
MIN_PASSWORD_CHARS = 12


@dataclass(frozen=True, slots=True)
class Scope:
    """The teams a viewer may see: `teams` sorted, or None for every team and the rows with no team."""

    teams: tuple[str, ...] | None = None

    @classmethod
    def of(cls, teams: Iterable[str]) -> Scope:
        return cls(tuple(sorted(set(teams))))

    @property
    def all_teams(self) -> bool:
        return self.teams is None

    def allows(self, team: str | None) -> bool:
        """Whether a row of `team` (None: a row with no team) may be shown."""
        return self.teams is None or (team is not None and team in self.teams)

    def narrow(self, teams: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """`teams` (None: no restriction yet) cut down to this scope."""
        if self.teams is None:
            return teams
        if teams is None:
            return self.teams
        return tuple(t for t in teams if t in self.teams)

    def describe(self) -> str:
        return "all teams" if self.teams is None else ", ".join(self.teams) or "no team"


EVERYTHING = Scope()


def user_name(text: str) -> str:
    """A user's name as stored and compared: trimmed, lower case (an email's case does not name another
    person); printable, no spaces, at most 254 characters."""
    name = unicodedata.normalize("NFKC", text).strip().lower()
    if not name:
        raise InputError("a user name cannot be empty")
    if len(name) > MAX_NAME_CHARS:
        raise InputError(f"a user name is at most {MAX_NAME_CHARS} characters")
    if any(c.isspace() or not c.isprintable() for c in name):
        raise InputError("a user name has no spaces or control characters (use a login or an email)")
    return name


def team_names(text: str) -> tuple[str, ...]:
    """`--teams a,b`: the teams, trimmed, without repeats; at least one."""
    teams = tuple(sorted({t.strip() for t in text.split(",") if t.strip()}))
    if not teams:
        raise InputError("--teams names at least one team, e.g. --teams search,support")
    return teams


def check_password(password: str) -> None:
    """A password long enough that the slow hash and the back-off make guessing it hopeless."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise InputError(f"a password has at least {MIN_PASSWORD_CHARS} characters")


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard user: a local name with a password, or an identity provider's email (no password)."""

    name: str
    teams: tuple[str, ...]
    all_teams: bool
    has_password: bool
    created_at: datetime

    def __post_init__(self) -> None:
        if self.all_teams == bool(self.teams):
            raise InputError("a user has either --teams or --all-teams")

    @property
    def scope(self) -> Scope:
        return EVERYTHING if self.all_teams else Scope.of(self.teams)


def session_expired(signed_in_at: datetime, now: datetime, session_hours: float) -> bool:
    """A sign-in lasts `session_hours`, then the viewer signs in again (a forgotten tab does not stay open
    on a shared screen for days)."""
    return now - signed_in_at >= timedelta(hours=session_hours)


# ------------------------------------------------------------------------------------------ back-off


@dataclass(frozen=True, slots=True)
class BackOff:
    """Failed attempts allowed for free, then a wait doubling from `first_wait_s` up to `max_wait_s`;
    forgotten after `forget_after_s` without a failure."""

    free_failures: int
    first_wait_s: float
    max_wait_s: float
    forget_after_s: float

    def wait_s(self, failures: int) -> float:
        if failures < self.free_failures:
            return 0.0
        return float(min(self.max_wait_s, self.first_wait_s * 2.0 ** (failures - self.free_failures)))


PER_NAME = BackOff(free_failures=3, first_wait_s=2.0, max_wait_s=900.0, forget_after_s=3600.0)
# overall: many names tried at once (a list of guessed names) slows every attempt, but for at most a minute,
# so a flood of failures cannot lock the real users out for long
OVERALL = BackOff(free_failures=20, first_wait_s=1.0, max_wait_s=60.0, forget_after_s=900.0)


@dataclass
class _Failures:
    count: int = 0
    last: datetime | None = None


@dataclass
class SignInThrottle:
    """Failed sign-ins per name and overall, and how long the next attempt must wait.

    One per dashboard process (threads share it; a lock guards it). An attempt during a wait is refused
    without checking the password, so a wait cannot be shortened by trying harder.
    """

    per_name: BackOff = PER_NAME
    overall: BackOff = OVERALL
    _names: dict[str, _Failures] = field(default_factory=dict)
    _all: _Failures = field(default_factory=_Failures)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_s(self, name: str, now: datetime) -> float:
        """Seconds before `name` may try again (0: now)."""
        with self._lock:
            return max(
                self._remaining(self._names.get(name), self.per_name, now),
                self._remaining(self._all, self.overall, now),
            )

    def failed(self, name: str, now: datetime) -> None:
        with self._lock:
            for record, rule in (
                (self._names.setdefault(name, _Failures()), self.per_name),
                (self._all, self.overall),
            ):
                if record.last is not None and (now - record.last).total_seconds() >= rule.forget_after_s:
                    record.count = 0
                record.count += 1
                record.last = now

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._names.pop(name, None)

    @staticmethod
    def _remaining(record: _Failures | None, rule: BackOff, now: datetime) -> float:
        if record is None or record.last is None:
            return 0.0
        elapsed = (now - record.last).total_seconds()
        if elapsed >= rule.forget_after_s:
            return 0.0
        return max(0.0, rule.wait_s(record.count) - elapsed)


def oidc_providers(auth: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The identity providers an `[auth]` section of Streamlit's `secrets.toml` configures (`st.login`):
    `default` when `client_id` sits in `[auth]` itself, and each `[auth.NAME]` with a `client_id`. None
    without the `redirect_uri` and `cookie_secret` every provider needs."""
    if not auth or not auth.get("redirect_uri") or not auth.get("cookie_secret"):
        return ()
    named = tuple(sorted(k for k, v in auth.items() if isinstance(v, Mapping) and v.get("client_id")))
    return (("default",) if auth.get("client_id") else ()) + named
