"""Storage: the only package that imports duckdb.

Schema, connections, writes, named reads, catalog loading.
"""
