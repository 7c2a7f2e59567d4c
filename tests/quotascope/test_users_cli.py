"""`quotascope users` and the dashboard's host guard as a user runs them, on a real DuckDB file: the
password never lands in the database, the output or the logs; beyond loopback needs sign-in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from models.errors import InputError
from quotascope.cli import main
from quotascope.commands.dashboard import check_exposure, is_loopback, oidc_configured
from storage.users import check_sign_in, find_user

PASSWORD = "correct horse battery staple"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_remove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "q.duckdb"
    monkeypatch.setenv("LEAD_PASSWORD", PASSWORD)
    code, out, _ = run(
        capsys,
        "users",
        "add",
        "Lead",
        "--teams",
        "search, support,search",
        "--password-env",
        "LEAD_PASSWORD",
        "--db",
        str(db),
    )
    assert code == 0 and out.strip() == "Added lead: sees teams search, support; signs in with a password."
    code, out, _ = run(capsys, "users", "add", "fin@corp.example", "--all-teams", "--db", str(db))
    assert "sees every team; signs in with the identity provider only" in out
    code, out, _ = run(capsys, "users", "list", "--json", "--db", str(db))
    users = {u["name"]: u for u in json.loads(out)["users"]}
    assert users["lead"]["teams"] == ["search", "support"] and users["fin@corp.example"]["teams"] == "all"
    assert users["fin@corp.example"]["sign_in"] == "identity provider"
    with duckdb.connect(str(db), read_only=True) as con:  # argon2id, and the password nowhere in the file
        stored = con.execute("SELECT password_hash FROM users").fetchall()
    assert any(h and h.startswith("$argon2id$") for (h,) in stored)
    assert PASSWORD.encode() not in db.read_bytes()
    assert check_sign_in(db, "LEAD", PASSWORD) is not None and check_sign_in(db, "lead", "wrong") is None
    assert check_sign_in(db, "fin@corp.example", "") is None  # an OIDC-only user has no password to guess
    code, out, _ = run(capsys, "users", "remove", "lead", "--db", str(db))
    assert code == 0 and find_user(db, "lead") is None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["users", "add", "x", "--teams", "a"], ""),  # OIDC-only: fine
        (["users", "add", "x"], "one of the arguments --teams --all-teams is required"),
        (["users", "add", "x", "--teams", "a", "--all-teams"], "not allowed with"),
        (["users", "add", "x", "--teams", " , "], "names at least one team"),
        (["users", "add", "x y", "--teams", "a"], "no spaces"),
        (["users", "add", "x", "--teams", "a", "--password-env", "UNSET_VARIABLE"], "is not set"),
        (["users", "add", "x", "--teams", "a", "--password-env", "SHORT"], "at least 12 characters"),
        (["users", "remove", "nobody"], "there is no user 'nobody'"),
    ],
)
def test_mistakes_are_one_sentence(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    says: str,
) -> None:
    monkeypatch.setenv("SHORT", "tooshort")
    try:
        code, _, err = run(capsys, *argv, "--db", str(tmp_path / "q.duckdb"))
    except SystemExit as e:  # argparse's own mistakes
        code, err = int(e.code or 0), capsys.readouterr().err
    assert (code == 0) == (says == ""), err
    assert says in err and len(err.strip().splitlines()) <= 1 and "tooshort" not in err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("dashboard.corp", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def serve_argv(db: Path, host: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "quotascope.cli",
        "dashboard",
        "--db",
        str(db),
        "--host",
        host,
        "--port",
        "1",
    ]


def test_beyond_loopback_needs_sign_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "q.duckdb"
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.streamlit/secrets.toml of the machine's
    assert main(["users", "add", "gone", "--all-teams", "--db", str(db)]) == 0
    assert main(["users", "remove", "gone", "--db", str(db)]) == 0  # a database with no user
    done = subprocess.run(serve_argv(db, "0.0.0.0"), capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("quotascope: refusing to serve on 0.0.0.0 without sign-in")
    assert len(done.stderr.strip().splitlines()) == 1 and not done.stdout


def test_oidc_counts_as_sign_in(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    assert not oidc_configured([secrets])
    secrets.write_text(
        '[auth]\nredirect_uri = "https://q.corp/oauth2callback"\ncookie_secret = "s3cret-s3cret-s3cret"\n'
    )
    assert not oidc_configured([secrets])  # no provider yet
    secrets.write_text(
        secrets.read_text()
        + '[auth.okta]\nclient_id = "q"\nclient_secret = "x"\nserver_metadata_url = "https://okta/.well-known/openid-configuration"\n'
    )
    assert oidc_configured([secrets])


def test_a_user_lets_the_dashboard_listen_beyond_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "q.duckdb"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["users", "add", "gone", "--all-teams", "--db", str(db)]) == 0
    check_exposure(db, "0.0.0.0")  # a user exists: allowed
    assert main(["users", "remove", "gone", "--db", str(db)]) == 0
    with pytest.raises(InputError, match=r"refusing to serve on 0\.0\.0\.0"):
        check_exposure(db, "0.0.0.0")
    check_exposure(db, "127.0.0.1")
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        '[auth]\nredirect_uri = "https://q.corp/oauth2callback"\ncookie_secret = "s3cret-s3cret-s3cret"\n'
        'client_id = "q"\nclient_secret = "x"\nserver_metadata_url = "https://idp/.well-known/openid-configuration"\n'
    )
    check_exposure(db, "0.0.0.0")  # OIDC configured in the working folder: allowed


def test_a_weaker_hash_is_replaced_at_sign_in(tmp_path: Path) -> None:
    from argon2 import PasswordHasher

    from storage.db import open_write

    db = tmp_path / "q.duckdb"
    assert main(["users", "add", "old", "--all-teams", "--db", str(db)]) == 0
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with open_write(db) as con:  # as an older quotascope with cheaper parameters stored it
        con.execute("UPDATE users SET password_hash = ? WHERE name = 'old'", [weak])
    assert check_sign_in(db, "old", PASSWORD) is not None
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT password_hash FROM users WHERE name = 'old'").fetchone()
    assert row is not None and row[0] != weak and "m=65536,t=3,p=4" in row[0]
    assert check_sign_in(db, "old", PASSWORD) is not None
