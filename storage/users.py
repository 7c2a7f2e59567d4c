"""Dashboard users: saved with an argon2id hash of their password, listed, removed, and checked at sign-in.

argon2id (RFC 9106) is memory-hard: each guess costs 64 MiB and tens of milliseconds, on a GPU as on the
server. The hash string carries its own parameters and salt (argon2-cffi's encoding), so raising the cost
later still verifies old hashes, and `check_sign_in` re-hashes a password whose hash used weaker
parameters. A password is never stored, logged or returned; an unknown name costs the same hash as a
known one, so timing does not tell which names exist.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from models.access import User, check_password, user_name
from models.errors import InputError
from storage.db import open_read, open_write

_HASHER = PasswordHasher()  # argon2id, RFC 9106 "low memory" profile: t=3, m=64 MiB, p=4


@functools.cache
def _decoy() -> str:
    """Verified against when the name is unknown, so that an unknown name takes as long as a wrong password.
    Made on first use, not on import: the dashboard imports this module, and a hash costs 0.25 s of CPU that
    every first page visit after a start paid, signed in or not."""
    return _HASHER.hash("quotascope: no such user")


_COLUMNS = "name, teams, all_teams, password_hash IS NOT NULL, created_at"


def _user(row: tuple[Any, ...]) -> User:
    name, teams, all_teams, has_password, created_at = row
    return User(name, tuple(teams), bool(all_teams), bool(has_password), created_at)


def save_user(
    db: Path, name: str, teams: tuple[str, ...], all_teams: bool, password: str | None, now: datetime
) -> tuple[User, bool]:
    """Create the user, or replace the teams and password of the one with the same name. Returns the user
    and whether it was new. `password` None: the user signs in through the identity provider only."""
    name = user_name(name)
    if password is not None:
        check_password(password)
    user = User(name, () if all_teams else tuple(sorted(set(teams))), all_teams, password is not None, now)
    hashed = None if password is None else _HASHER.hash(password)
    with open_write(db) as con:
        found = con.execute("SELECT created_at FROM users WHERE name = ?", [name]).fetchone()
        if found:
            con.execute(
                "UPDATE users SET teams = ?, all_teams = ?, password_hash = ?, updated_at = ? WHERE name = ?",
                [list(user.teams), all_teams, hashed, now, name],
            )
            return User(name, user.teams, all_teams, user.has_password, found[0]), False
        con.execute(
            "INSERT INTO users (name, teams, all_teams, password_hash, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [name, list(user.teams), all_teams, hashed, now, now],
        )
    return user, True


def read_users(db: Path) -> list[User]:
    """Every user, by name; none when there is no database yet."""
    if not Path(db).exists():
        return []
    with open_read(db) as con:
        rows = con.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name").fetchall()
    return [_user(row) for row in rows]


def find_user(db: Path, name: str) -> User | None:
    """The user called `name` (any case), or None."""
    try:
        key = user_name(name)
    except InputError:
        return None
    if not Path(db).exists():
        return None
    with open_read(db) as con:
        row = con.execute(f"SELECT {_COLUMNS} FROM users WHERE name = ?", [key]).fetchone()
    return None if row is None else _user(row)


def remove_user(db: Path, name: str) -> bool:
    with open_write(db) as con:
        row = con.execute("DELETE FROM users WHERE name = ? RETURNING name", [user_name(name)]).fetchone()
    return row is not None


def check_sign_in(db: Path, name: str, password: str) -> User | None:
    """The user if `password` is theirs, else None (unknown name, wrong password, or an OIDC-only user).

    Always runs one argon2 verification, so a wrong name and a wrong password take as long."""
    try:
        key = user_name(name)
    except InputError:
        key = None
    row = None
    if key is not None and Path(db).exists():
        with open_read(db) as con:
            row = con.execute(f"SELECT {_COLUMNS}, password_hash FROM users WHERE name = ?", [key]).fetchone()
    stored = row[-1] if row is not None and row[-1] is not None else None
    try:
        _HASHER.verify(stored or _decoy(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if stored is None or row is None:
        return None  # the decoy matched: only its own text can, and it names no user
    if _HASHER.check_needs_rehash(stored):
        _rehash(db, row[0], stored, password)
    return _user(row[:-1])


def _rehash(db: Path, name: str, stored: str, password: str) -> None:
    """Store the password's hash under today's parameters (only if the hash was not changed meanwhile)."""
    with open_write(db) as con:
        con.execute(
            "UPDATE users SET password_hash = ? WHERE name = ? AND password_hash = ?",
            [_HASHER.hash(password), name, stored],
        )


def sign_in_configured(db: Path) -> bool:
    """Whether any user exists: then the dashboard shows nothing before sign-in."""
    if not Path(db).exists():
        return False
    with open_read(db) as con:
        row = con.execute("SELECT count(*) FROM users").fetchone()
    return bool(row and row[0])
