"""Alerts raised when the bill and the cost computed from the logs differ by more than a threshold.

One alert per day and provider (`quotascope report reconcile` raises them, as `quotascope budget status`
raises budget alerts), with the figures it was raised with and whether its webhook was delivered.
Money is DECIMAL; timestamps naive UTC.
"""

from __future__ import annotations

NUMBER = 21
NAME = "gap_alerts"

SQL = """
CREATE SEQUENCE gap_alerts_id_seq START 1;

CREATE TABLE gap_alerts (
    alert_id        BIGINT NOT NULL DEFAULT nextval('gap_alerts_id_seq'),
    day             DATE NOT NULL,
    provider        VARCHAR,                 -- NULL when reconciled without --by provider
    billed          DECIMAL(20, 10) NOT NULL,
    computed        DECIMAL(20, 10) NOT NULL,
    gap             DECIMAL(20, 10) NOT NULL,  -- billed - computed
    gap_share       DECIMAL(20, 10),           -- gap / billed; NULL when nothing was billed
    currency        VARCHAR NOT NULL,
    threshold       DECIMAL(10, 6) NOT NULL,
    message         VARCHAR NOT NULL,
    raised_at       TIMESTAMP NOT NULL,
    webhook_status  VARCHAR                  -- NULL: no webhook; 'delivered (HTTP 200)' or 'failed: ...'
);
"""
