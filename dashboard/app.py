"""The quotascope dashboard: `streamlit run dashboard/app.py` (or `quotascope dashboard`)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import state

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="quotascope", page_icon=":material/speed:", layout="wide")

with st.sidebar:
    st.markdown("### quotascope")
    st.caption(f"Database: `{state.db_path()}`")
    currencies = ["offer's own", *state.catalog().fx.currencies()]
    st.selectbox(
        "Display currency",
        currencies,
        key="display_currency",
        help="Every money figure is shown in this currency, converted with the catalog's dated FX rates",
    )

pages = [
    st.Page(VIEWS / "planner.py", title="Planner", icon=":material/calculate:", default=True),
    st.Page(VIEWS / "endpoints.py", title="Endpoints", icon=":material/monitor_heart:"),
    st.Page(VIEWS / "catalog.py", title="Catalog", icon=":material/menu_book:"),
]
st.navigation(pages).run()
