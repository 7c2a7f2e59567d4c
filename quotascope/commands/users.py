"""`quotascope users`: who may sign in to the dashboard, and which teams each sees."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import Any

from models.access import User, team_names
from models.errors import InputError
from quotascope.context import db_path
from quotascope.output import emit, table
from storage.users import read_users, remove_user, save_user


def teams_arg(text: str) -> tuple[str, ...]:
    try:
        return team_names(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(commands: Any, parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "users",
        parents=[parent],
        help="dashboard users: who may sign in and which teams each sees",
        description="Once a user exists the dashboard shows nothing before sign-in, and each user sees only "
        "their teams (or every team with --all-teams). Passwords are read from an environment variable, "
        "hashed with argon2id, and never stored or shown.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser(
        "add",
        parents=[parent],
        help="create a user, or replace one's teams and password",
        description="NAME is a login, or the email an identity provider (OIDC, `st.login`) signs the user "
        "in with; without --password-env the user signs in through the identity provider only.",
    )
    a.add_argument("name", metavar="NAME")
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument("--teams", type=teams_arg, metavar="A,B", help="the teams this user sees")
    who.add_argument(
        "--all-teams", action="store_true", help="sees every team, and usage with no team (finance)"
    )
    a.add_argument(
        "--password-env",
        metavar="VAR",
        help="environment variable holding the password (at least 12 characters)",
    )
    a.set_defaults(run=run_add)
    ls = actions.add_parser("list", parents=[parent], help="every user and the teams each sees")
    ls.set_defaults(run=run_list)
    rm = actions.add_parser("remove", parents=[parent], help="delete a user (signed out at their next click)")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(run=run_remove)


def _password(variable: str | None) -> str | None:
    if variable is None:
        return None
    password = os.environ.get(variable)
    if not password:
        raise InputError(f"the environment variable {variable} is not set or empty; it holds the password")
    return password


def _document(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "teams": "all" if user.all_teams else list(user.teams),
        "sign_in": "password" if user.has_password else "identity provider",
        "created_at": user.created_at,
    }


def run_add(args: argparse.Namespace) -> int:
    now = datetime.now(UTC).replace(tzinfo=None)
    user, created = save_user(
        db_path(args), args.name, args.teams or (), args.all_teams, _password(args.password_env), now
    )
    sees = "every team" if user.all_teams else "teams " + ", ".join(user.teams)
    how = "a password" if user.has_password else "the identity provider only"
    emit(
        args.json,
        {"user": _document(user), "created": created},
        lambda: f"{'Added' if created else 'Updated'} {user.name}: sees {sees}; signs in with {how}.",
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    users = read_users(db_path(args))

    def text() -> str:
        if not users:
            return (
                "No users: the dashboard is open to whoever reaches it (loopback only). Add one with "
                "`quotascope users add NAME --teams A,B --password-env VAR`."
            )
        rows = [
            [d["name"], ", ".join(d["teams"]) if isinstance(d["teams"], list) else d["teams"], d["sign_in"]]
            for d in map(_document, users)
        ]
        return table(["name", "teams", "signs in with"], rows)

    emit(args.json, {"users": [_document(u) for u in users]}, text)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    if not remove_user(db_path(args), args.name):
        raise InputError(f"there is no user {args.name!r}; see `quotascope users list`")
    emit(args.json, {"removed": args.name}, lambda: f"Removed {args.name}.")
    return 0
