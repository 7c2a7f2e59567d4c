"""The dashboard server's allocator settings: read by the allocator they are meant for, over the defaults that
allocator's package writes into the environment."""

from __future__ import annotations

import os
import subprocess
import sys

from dashboard.serve import ALLOCATOR_ENV, server_env

BUILD_A_FRAME = "import polars as pl; pl.DataFrame({'a': list(range(1000))}).sum()"


def _polars_stderr(conf: str) -> str:
    env = dict(os.environ, _RJEM_MALLOC_CONF=conf)
    done = subprocess.run([sys.executable, "-c", BUILD_A_FRAME], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_polars_allocator_reads_the_setting_and_takes_ours() -> None:
    # the variable is polars' jemalloc's: an unknown option in it is reported (were it read by nothing, or
    # by another allocator, the setting would silently do nothing and the app's peak memory would wander)
    assert "Invalid conf pair" in _polars_stderr("no_such_option:1")
    # and every option of ours is one it knows
    assert _polars_stderr(ALLOCATOR_ENV["_RJEM_MALLOC_CONF"]) == ""


def test_the_server_env_puts_ours_last_keeping_the_operators_options() -> None:
    import polars  # noqa: F401  (it writes its defaults into this process's environment)

    ours = ALLOCATOR_ENV["_RJEM_MALLOC_CONF"]
    assert not os.environ["_RJEM_MALLOC_CONF"].endswith(ours)
    assert server_env()["_RJEM_MALLOC_CONF"] == os.environ["_RJEM_MALLOC_CONF"] + "," + ours
    assert server_env({"PATH": "/bin"}) == {"PATH": "/bin", **ALLOCATOR_ENV}
    operators = server_env({"_RJEM_MALLOC_CONF": "narenas:2"})
    assert operators["_RJEM_MALLOC_CONF"] == "narenas:2," + ours
    assert server_env(operators) == operators  # applied twice (a launcher's child), said once
    # the whole string polars will see in the server (its defaults, the operator's, ours) is one it accepts
    assert _polars_stderr(operators["_RJEM_MALLOC_CONF"]) == ""
