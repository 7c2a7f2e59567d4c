"""Pure domain of quotascope: catalog values, pricing, capacity, cost.

Nothing in this package does I/O or imports duckdb, httpx or streamlit (a test checks it).
"""
