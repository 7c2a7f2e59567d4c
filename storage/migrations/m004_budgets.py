"""Budgets and the alerts raised against them (`quotascope budget`, the dashboard's budget lines).

A budget is an amount per month for the total, a team or a project, in one currency; `month` NULL means
every month, a row for a given month replaces the standing one of its scope for that month. An alert is
raised once per budget, month, threshold and kind (spent, or forecast to be spent by month end) and says
whether its webhook was delivered. Money is DECIMAL; timestamps naive UTC.
"""

from __future__ import annotations

NUMBER = 4
NAME = "budgets"

SQL = """
CREATE SEQUENCE budgets_id_seq START 1;

CREATE TABLE budgets (
    budget_id    BIGINT NOT NULL DEFAULT nextval('budgets_id_seq'),
    scope        VARCHAR NOT NULL CHECK (scope IN ('total', 'team', 'project')),
    scope_value  VARCHAR,                -- the team or project; NULL for total
    month        DATE,                   -- its first day; NULL: every month
    amount       DECIMAL(20, 6) NOT NULL CHECK (amount > 0),
    currency     VARCHAR NOT NULL,
    webhook_url  VARCHAR,                -- POSTed a JSON alert when a threshold is crossed
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL
);

CREATE SEQUENCE alerts_id_seq START 1;

CREATE TABLE alerts (
    alert_id        BIGINT NOT NULL DEFAULT nextval('alerts_id_seq'),
    budget_id       BIGINT NOT NULL,
    scope           VARCHAR NOT NULL,    -- the budget's label when raised (total, team=x, project=y)
    month           DATE NOT NULL,
    threshold       DECIMAL(6, 4) NOT NULL,  -- 0.8 = 80 %
    kind            VARCHAR NOT NULL CHECK (kind IN ('spent', 'forecast')),
    spent           DECIMAL(20, 6) NOT NULL,
    forecast        DECIMAL(20, 6) NOT NULL,
    budget_amount   DECIMAL(20, 6) NOT NULL,
    currency        VARCHAR NOT NULL,
    message         VARCHAR NOT NULL,
    raised_at       TIMESTAMP NOT NULL,
    webhook_status  VARCHAR              -- NULL: no webhook; 'delivered (HTTP 200)' or 'failed: ...'
);
"""
