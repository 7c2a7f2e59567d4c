"""Dashboard users (`quotascope users`): who may sign in, and which teams each sees.

A user is a local name with a password hash (argon2id, encoded with its parameters and salt; the password
itself is never stored), or an identity provider's email with no password (signs in through OIDC only).
`all_teams` users see every team and the usage with no team; the others see `teams` only.
"""

from __future__ import annotations

NUMBER = 25
NAME = "users"

SQL = """
CREATE TABLE users (
    name           VARCHAR NOT NULL,     -- lower case: a login, or an OIDC identity's email
    teams          VARCHAR[] NOT NULL,   -- empty for all_teams users
    all_teams      BOOLEAN NOT NULL,
    password_hash  VARCHAR,              -- argon2id encoded hash; NULL: OIDC sign-in only
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL
);
"""
