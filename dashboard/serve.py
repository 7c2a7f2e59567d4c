"""`python -m dashboard.serve [streamlit run arguments]`: the Streamlit server, with what the pages need
imported before it serves anyone (`quotascope dashboard` starts it so).

Streamlit runs a page's script only once a visitor connects, so without this the first visit after a start
pays for importing pandas (Streamlit's tables), plotly and the pages' own modules: 0.5 s of a 2 s first
Overview on two busy cores (cProfile, benchmarks/dashboard.py). Imported here once, at start.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Mapping

# What the server's environment sets (`server_env`), read by allocators as they load, so set before the server
# process starts. Polars' own jemalloc keeps the pages of freed frames for a while (polars sets
# dirty_decay_ms:500,muzzy_decay_ms:1000 and appends this variable to it, later options winning), and a page
# run frees most of what it built a moment later. With polars' setting, the app's peak resident memory with
# every page visited twice (benchmarks/dashboard.py, six fresh processes per size) was 455-468 MB at 10M
# requests and 467-485 MB at 100M: what a larger store's pages had just freed was still held when the Switch
# replay set the peak. Handed back by jemalloc's background thread after 50 ms: 438-466 MB against 442-454 MB,
# and no first visit slower (handing pages back at once, in the freeing thread, cost the Switch replay a
# third more time).
ALLOCATOR_ENV = {"_RJEM_MALLOC_CONF": "background_thread:true,dirty_decay_ms:50,muzzy_decay_ms:0"}

# what the pages import on their first run (Streamlit's dataframe support imports pandas on first use);
# not dashboard.state: its st.cache_* decorators must meet the server's runtime, which starts after this
PRELOADED = (
    "argon2",  # the sign-in gate's users (dashboard.auth), on every page
    "quotascope.context",
    "collectors.prices.genai",
    "storage.users",
    "dashboard.tables",
    "pandas",
    "pyarrow.pandas_compat",  # Streamlit's tables convert through it
    "streamlit.material_icon_names",  # the pages' icons
    "streamlit.runtime.scriptrunner.magic_funcs",
    "plotly.graph_objects",
    "dashboard.charts",
    "models.plan",
    "models.selfhost",
    "models.mix",
    "storage.budgets",
    "storage.explore",
    "storage.probes",
    "storage.profiles",
    "storage.simulation",
)


def server_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (this process's environment by default) with `ALLOCATOR_ENV`'s options after any already set
    under the same name (jemalloc takes the last of an option given twice): ours win on what they set, an
    operator's other options (or polars' defaults, which a process that imported polars holds) stay."""
    env = dict(os.environ if base is None else base)
    for name, options in ALLOCATOR_ENV.items():
        if not env.get(name, "").endswith(options):
            env[name] = ",".join(part for part in (env.get(name), options) if part)
    return env


def preload() -> None:
    for module in PRELOADED:
        importlib.import_module(module)
    # the schema migrations this process knows, which the first open of the file looks up (importing each
    # migration's module: 20-50 ms of every first visit otherwise)
    from storage.db import known_migrations

    known_migrations()
    # Streamlit's first element of a run checks whether it runs in a REPL by walking the script thread's
    # stack with `inspect`, whose first lookup of a frame's module maps every loaded module to its file
    # (a realpath each: 0.1-0.2 s of a first visit). Mapped here, once, at start.
    inspect.getmodule(inspect.currentframe())
    _warm_plotly()


def _warm_plotly() -> None:
    """Plotly loads its template and each trace type's property validators on first use, and Streamlit
    serialises a figure with `plotly.io.to_json`: one small figure of every trace type the charts use,
    built and serialised once at start (0.1-0.2 s of the first page with a chart otherwise)."""
    import plotly.graph_objects as go
    import plotly.io

    from dashboard.charts import empty_figure

    figure = empty_figure("", "")
    figure.add_trace(go.Scatter(x=[0], y=[0], mode="lines+markers", name="", fill="tozeroy"))
    figure.add_trace(go.Bar(x=[0], y=[0], name=""))
    figure.add_trace(go.Histogram(x=[0], name=""))
    figure.add_hline(y=0)
    figure.add_vline(x=0)
    plotly.io.to_json(figure, validate=False)


def main() -> None:
    preload()
    from streamlit.web import cli

    sys.exit(cli.main(prog_name="streamlit"))


if __name__ == "__main__":
    main()
