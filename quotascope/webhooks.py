"""Delivering alerts (budgets, billing gaps) to a webhook: one JSON POST each, never blocking the command
that raised them.

The client is a parameter (tests talk to a real local server); a failure is recorded as one sentence on the
alert and reported, never raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx

from storage.budgets import RaisedAlert
from storage.reconcile import GapAlert

TIMEOUT_S = 5.0


def new_client() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT_S, headers={"User-Agent": "quotascope-budget-alerts"})


def deliver(client: httpx.Client, url: str, alert: RaisedAlert) -> str:
    """POST one alert; returns what happened ("delivered (HTTP 200)" or "failed: ...")."""
    return post_json(client, url, alert.payload())


def post_json(client: httpx.Client, url: str, payload: dict[str, Any]) -> str:
    """POST one JSON alert (budget or billing gap); returns what happened, never raises."""
    try:
        response = client.post(url, json=payload)
    except httpx.HTTPError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"failed: {reason}"
    if response.is_success:
        return f"delivered (HTTP {response.status_code})"
    return f"failed: HTTP {response.status_code}"


def deliver_all(client: httpx.Client, alerts: Sequence[RaisedAlert]) -> dict[int, str]:
    """Each alert to its budget's webhook (alerts of budgets without one are skipped)."""
    return {
        alert.alert_id: deliver(client, alert.budget.webhook_url, alert)
        for alert in alerts
        if alert.budget.webhook_url
    }


def gap_webhook(url: str) -> Callable[[Sequence[GapAlert]], dict[int, str]] | None:
    """What sends billing-gap alerts to `url` (None when no webhook is set): each POSTed once, what happened
    by alert id."""
    if not url:
        return None

    def send(alerts: Sequence[GapAlert]) -> dict[int, str]:
        with new_client() as client:
            return {alert.alert_id: post_json(client, url, alert.payload()) for alert in alerts}

    return send
