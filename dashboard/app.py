"""The quotascope dashboard: `streamlit run dashboard/app.py` (or `quotascope dashboard`)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import state
from quotascope import settings

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="quotascope", page_icon=":material/speed:", layout="wide")

with st.sidebar:
    st.markdown("### quotascope")
    st.caption(f"Database: `{state.db_path()}`")
    currencies = state.catalog().fx.currencies()
    preferred = settings.get("display_currency").upper() or "USD"
    st.selectbox(
        "Display currency",
        currencies,
        index=currencies.index(preferred) if preferred in currencies else 0,
        key="display_currency",
        help="Every money figure is shown in this currency, converted with the catalog's dated FX rates",
    )

pages = [
    st.Page(VIEWS / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page(VIEWS / "planner.py", title="Planner", icon=":material/calculate:"),
    st.Page(VIEWS / "endpoints.py", title="Endpoints", icon=":material/monitor_heart:"),
    st.Page(VIEWS / "catalog.py", title="Catalog", icon=":material/menu_book:"),
]
st.navigation(pages).run()
