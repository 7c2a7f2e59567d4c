"""The quotascope dashboard: `streamlit run dashboard/app.py` (or `quotascope dashboard`)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import auth, state
from models.errors import QuotascopeError
from models.outside_text import for_markdown
from quotascope import settings
from storage.db import one_connection
from storage.explore import Dimensions, usage_dimensions

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="quotascope", page_icon=":material/speed:", layout="wide")
# one read-only connection to the DuckDB file for the whole run (sign-in, sidebar and page), opened at the
# first read and closed when the run ends: opening the file per read cost a first visit 10-20 opens
with one_connection():
    # nothing below runs before sign-in (when sign-in is configured); every read after it is in the
    # viewer's scope
    viewer = auth.require_viewer(state.db_path(), state.data_version())

    with st.sidebar:
        st.markdown("### quotascope")
        auth.sign_out_button(viewer)
        if viewer.scope.all_teams:  # where the server keeps its data is no team lead's business
            st.caption(f"Database: {for_markdown(state.store().describe())}")
        currencies = state.catalog().fx.currencies()
        preferred = settings.get("display_currency").upper() or "USD"
        st.selectbox(
            "Display currency",
            currencies,
            index=currencies.index(preferred) if preferred in currencies else 0,
            key="display_currency",
            help="Every money figure is shown in this currency, converted with the catalog's dated FX rates",
        )

        if state.has_database():
            dims: Dimensions | None
            try:
                dims = state.read(usage_dimensions)
            except QuotascopeError:
                dims = None
            if dims is not None and dims.first is not None and dims.last is not None:
                st.date_input(
                    "Period (UTC)",
                    value=(dims.first.date(), dims.last.date()),
                    key="filter_dates",
                    min_value=dims.first.date(),
                    max_value=dims.last.date(),
                )
                st.selectbox("Provider", ["all", *dims.providers], key="filter_provider")
                st.selectbox("Model", ["all", *dims.models], key="filter_model")
                st.selectbox("Team", ["all", *dims.teams], key="filter_team")

    pages = [
        st.Page(VIEWS / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page(VIEWS / "planner.py", title="Planner", icon=":material/calculate:"),
        st.Page(VIEWS / "spend.py", title="Spend", icon=":material/payments:"),
        st.Page(VIEWS / "reconcile.py", title="Billing gap", icon=":material/receipt_long:"),
        st.Page(VIEWS / "usage.py", title="Usage profile", icon=":material/bar_chart:"),
        st.Page(VIEWS / "endpoints.py", title="Endpoints", icon=":material/monitor_heart:"),
        st.Page(VIEWS / "switch.py", title="Switch", icon=":material/swap_horiz:"),
        st.Page(VIEWS / "catalog.py", title="Catalog", icon=":material/menu_book:"),
    ]
    st.navigation(pages).run()
