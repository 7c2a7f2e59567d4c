"""Each query is written once, in DuckDB's SQL; this renders it in ClickHouse's with SQLGlot.

`sqlglot.transpile(read="duckdb", write="clickhouse")` does the bulk (types, casts, `GROUP BY ALL`, window
functions); the few constructs it leaves as they were or gets wrong for us are rewritten here, in one
place, each in a small transform with its test (tests/storage/test_dialect.py):

- `?` parameters become typed literals (SQLGlot quotes them): ClickHouse over HTTP and chdb then run the
  same text, and a value can never be read as SQL;
- `round(x, n)` rounds a tie away from zero as DuckDB does (ClickHouse's `round` rounds it to even);
- `epoch_us(ts)` is `toUnixTimestamp64Micro(ts)`, and `a // b` stays an integer division (`intDiv`)
  rather than SQLGlot's float division cast back to an integer (wrong past 2^53 microseconds);
- `TIMESTAMP '...'` literals keep their microseconds and UTC; `USING SAMPLE reservoir(N ROWS)` draws N
  rows ordered by a hash of each row (ClickHouse's `SAMPLE` needs a sampling key and reads whole granules);
- a table holding usage is read `FINAL`, so rows a ReplacingMergeTree has not merged yet never count
  twice.

Queries that need what ClickHouse has no form of (DuckDB's `struct_pack`, `USING SAMPLE`) are written
portably in the first place (`storage.reports`, `storage.explore`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlglot
from sqlglot import exp

__all__ = ["clickhouse_sql", "literal"]


def clickhouse_sql(
    sql: str,
    params: Sequence[Any] = (),
    *,
    final: Collection[str] = (),
    database: str | None = None,
    unqualified: Collection[str] = (),
) -> str:
    """`sql` (DuckDB's dialect, `?` parameters) as one ClickHouse statement with `params` in place, reading
    the tables named in `final` with `FINAL`, and every table the query does not define itself (a CTE) nor
    names in `unqualified` (a temporary or external table) in `database`."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    tree = _bind(tree, list(params))
    if database is not None:
        defined = {cte.alias_or_name for cte in tree.find_all(exp.CTE)} | set(unqualified)
        for table in tree.find_all(exp.Table):
            if not table.args.get("db") and table.name not in defined:
                table.set("db", exp.to_identifier(database))
    for rewrite in (_epoch_us, _integer_division, _round_half_away, _timestamp_literal, _sample):
        tree = tree.transform(rewrite)
    if final:
        tree = tree.transform(lambda node: _read_final(node, set(final)))
    return tree.sql(dialect="clickhouse")


def literal(value: Any) -> exp.Expr:
    """A Python value as a ClickHouse literal of the type DuckDB would have bound it as."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(repr(value))
    if isinstance(value, Decimal):
        return exp.Literal.number(format(value, "f"))
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return exp.Anonymous(
            this="toDateTime64",
            expressions=[
                exp.Literal.string(value.strftime("%Y-%m-%d %H:%M:%S.%f")),
                exp.Literal.number(6),
                exp.Literal.string("UTC"),
            ],
        )
    if isinstance(value, date):
        return exp.Anonymous(this="toDate", expressions=[exp.Literal.string(value.isoformat())])
    if isinstance(value, str):
        return exp.Literal.string(value)
    raise TypeError(f"no ClickHouse literal for {type(value).__name__}")


def _bind(tree: exp.Expr, params: list[Any]) -> exp.Expr:
    holes = [node for node in tree.find_all(exp.Placeholder) if node.this is None]
    if len(holes) != len(params):
        raise ValueError(f"the query has {len(holes)} parameters, {len(params)} given")
    # find_all walks breadth-first: order the holes as they stand in the text, as DuckDB numbers them
    positions = {id(node): i for i, node in enumerate(tree.walk(bfs=False))}
    for node, value in zip(sorted(holes, key=lambda n: positions[id(n)]), params, strict=True):
        node.replace(literal(value))
    return tree


def _epoch_us(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Anonymous) and node.name.lower() == "epoch_us":
        return exp.Anonymous(this="toUnixTimestamp64Micro", expressions=node.expressions)
    return node


def _integer_division(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.IntDiv):
        return exp.Anonymous(this="intDiv", expressions=[node.this, node.expression])
    return node


def _round_half_away(node: exp.Expr) -> exp.Expr:
    """DuckDB rounds a double's tie away from zero (C's round), ClickHouse's `round` to even: a 0.5 ms
    latency would round to different millisecond buckets. `sign(x) * floor(abs(x) * 10^n + 0.5) / 10^n`
    is DuckDB's rule in ClickHouse."""
    if not isinstance(node, exp.Round):
        return node
    digits = node.args.get("decimals")
    scale = exp.Pow(this=exp.Literal.number(10), expression=digits.copy()) if digits else None
    value = exp.Abs(this=node.this.copy())
    scaled = exp.Mul(this=value, expression=scale) if scale else value
    rounded = exp.Floor(this=exp.Add(this=scaled, expression=exp.Literal.number("0.5")))
    signed = exp.Mul(this=exp.Sign(this=node.this.copy()), expression=rounded)
    return exp.Div(this=signed, expression=scale.copy()) if scale else signed


def _timestamp_literal(node: exp.Expr) -> exp.Expr:
    """`TIMESTAMP '...'` (microseconds, UTC) as a DateTime64 in UTC; SQLGlot's `CAST(... AS DateTime)` would
    drop the microseconds and read the text in the server's time zone."""
    if (
        isinstance(node, exp.Cast)
        and isinstance(node.this, exp.Literal)
        and node.this.is_string
        and node.to.this in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ)
    ):
        return literal(datetime.fromisoformat(node.this.name))
    return node


def _sample(node: exp.Expr) -> exp.Expr:
    """`FROM x USING SAMPLE reservoir(N ROWS) REPEATABLE (s)` as N rows of x in the order of a hash of each
    whole row and the seed: repeatable, as DuckDB's is (a different draw: a sample, not a figure)."""
    sample = node.args.get("sample") if isinstance(node, exp.Select) else None
    if sample is None or node.args.get("from_") is None:
        return node
    seed = sample.args.get("seed") or exp.Literal.number(0)
    source = node.args["from_"].this
    drawn = (
        exp.select("*")
        .from_(source.copy())
        .order_by(exp.Anonymous(this="sipHash64", expressions=[seed.copy(), exp.Star()]))
        .limit(sample.args["size"].copy())
    )
    node.set("sample", None)
    node.set("from_", exp.From(this=drawn.subquery()))
    return node


def _read_final(node: exp.Expr, tables: set[str]) -> exp.Expr:
    if isinstance(node, exp.Table) and node.name in tables and not isinstance(node.parent, exp.Final):
        return exp.Final(this=node.copy())
    return node
