"""`python -m dashboard.serve [streamlit run arguments]`: the Streamlit server, with what the pages need
imported before it serves anyone (`quotascope dashboard` starts it so).

Streamlit runs a page's script only once a visitor connects, so without this the first visit after a start
pays for importing pandas (Streamlit's tables), plotly and the pages' own modules: 0.5 s of a 2 s first
Overview on two busy cores (cProfile, benchmarks/dashboard.py). Imported here once, at start.
"""

from __future__ import annotations

import importlib
import inspect
import sys

# what the pages import on their first run (Streamlit's dataframe support imports pandas on first use);
# not dashboard.state: its st.cache_* decorators must meet the server's runtime, which starts after this
PRELOADED = (
    "pandas",
    "pyarrow",
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


def preload() -> None:
    for module in PRELOADED:
        importlib.import_module(module)
    # Streamlit's first element of a run checks whether it runs in a REPL by walking the script thread's
    # stack with `inspect`, whose first lookup of a frame's module maps every loaded module to its file
    # (a realpath each: 0.1-0.2 s of a first visit). Mapped here, once, at start.
    inspect.getmodule(inspect.currentframe())


def main() -> None:
    preload()
    from streamlit.web import cli

    sys.exit(cli.main(prog_name="streamlit"))


if __name__ == "__main__":
    main()
