"""Reading a provider's admin API: the key kept secret, pages followed, 429 / 5xx retried after a wait.

The client is a parameter (an `httpx.AsyncClient`): protocol tests give it an `httpx.MockTransport`, wire
tests a real local server (the emulator). Every page is one GET; a page that says `has_more` names the next
with `next_page`, passed back as `page` (both OpenAI's and Anthropic's usage and cost APIs paginate so, see
`collectors.pull.apis`).

Retries follow what both providers document for rate limits: a 429 (and 500, 502, 503, 504, 529 overloaded)
is tried again after `Retry-After` seconds when the answer gives it (or `retry-after-ms`), else after an
exponential back-off with jitter; at most `MAX_ATTEMPTS` tries per page. Other 4xx answers stop at once.

The admin key is never stored, logged or shown: it lives in `AdminKey` (whose repr names only the variable it
came from), goes into a header and nowhere else, and every error sentence is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from models.errors import InputError, QuotascopeError

MAX_ATTEMPTS = 6
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 300.0  # a Retry-After longer than this is a reason to stop, not to wait
MAX_PAGES = 10_000  # a cursor that never ends is a broken API, not a long history
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
TIMEOUT_S = 60.0
USER_AGENT = "quotascope-pull"

Sleep = Callable[[float], Awaitable[None]]
QueryValue = str | int | Sequence[str]
QueryPairs = list[tuple[str, str | int | float | bool | None]]


class PullError(QuotascopeError):
    """A pull could not be completed; the message is one sentence with no key in it."""


class AdminKey:
    """An admin API key read from an environment variable. Only `value()` gives the key itself."""

    __slots__ = ("_value", "variable")

    def __init__(self, variable: str, value: str) -> None:
        self.variable = variable
        self._value = value

    @classmethod
    def from_env(cls, variable: str, environ: Mapping[str, str] | None = None) -> AdminKey:
        name = variable.strip().lstrip("$")
        if not name:
            raise InputError("--admin-key-env names the environment variable holding the admin key")
        value = (os.environ if environ is None else environ).get(name, "").strip()
        if not value:
            raise InputError(f"the environment variable {name} is not set (it should hold the admin key)")
        return cls(name, value)

    def value(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """`text` with the key (and any long part of it) replaced by `***`."""
        if self._value and self._value in text:
            text = text.replace(self._value, "***")
        return text

    def __repr__(self) -> str:
        return f"AdminKey(from ${self.variable})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickled into a job store or a cache
        raise TypeError("an admin key is not picklable")


@dataclass(frozen=True)
class PageRequest:
    """One paginated GET: the URL, its query (lists are repeated keys), and the headers that carry the key."""

    url: str
    query: Mapping[str, QueryValue]
    headers: Callable[[AdminKey], dict[str, str]]
    decimal_numbers: bool = False  # parse JSON fractions as Decimal (money must never pass through float)


@dataclass
class FetchStats:
    pages: int = 0
    retries: int = 0
    waited_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)


def retry_after_s(response: httpx.Response, now: datetime | None = None) -> float | None:
    """What the answer asks us to wait: `retry-after-ms`, or `Retry-After` in seconds or as an HTTP date."""
    millis = response.headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    text = response.headers.get("retry-after")
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_s(attempt: int, rng: random.Random) -> float:
    """Exponential back-off with full jitter after the `attempt`-th failed try (1-based)."""
    ceiling: float = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2.0 ** (attempt - 1))
    return ceiling * (0.5 + rng.random() / 2)


def _params(query: Mapping[str, QueryValue], page: str | None) -> QueryPairs:
    pairs: QueryPairs = []
    for name, value in query.items():
        if isinstance(value, (str, int)):
            pairs.append((name, value))
        else:
            pairs += [(name, v) for v in value]
    if page is not None:
        pairs.append(("page", page))
    return pairs


def _describe_failure(response: httpx.Response, key: AdminKey) -> str:
    """The provider's own error message (OpenAI and Anthropic both answer `{"error": {"message": ...}}`)."""
    message = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
    message = " ".join(key.scrub(message).split())[:200]
    hint = ""
    if response.status_code in (401, 403):
        hint = f" (is ${key.variable} an admin key of this organisation?)"
    return f"HTTP {response.status_code}{': ' + message if message else ''}{hint}"


def _where(url: str) -> str:
    """The URL as shown in errors: no query string, no credentials."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(query=None, userinfo=b""))


async def _get_page(
    client: httpx.AsyncClient,
    request: PageRequest,
    key: AdminKey,
    page: str | None,
    stats: FetchStats,
    sleep: Sleep,
    rng: random.Random,
) -> dict[str, Any]:
    """One page, retried on 429 / 5xx and on connection failures."""
    where = _where(request.url)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            response = await client.get(
                request.url, params=_params(request.query, page), headers=request.headers(key)
            )
        except httpx.HTTPError as e:
            reason = key.scrub(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            if attempt == MAX_ATTEMPTS or not isinstance(e, httpx.TransportError):
                raise PullError(f"cannot reach {where}: {reason}") from None
            wait = backoff_s(attempt, rng)
        else:
            stats.statuses[response.status_code] = stats.statuses.get(response.status_code, 0) + 1
            if response.is_success:
                try:
                    body = json.loads(
                        response.text, parse_float=Decimal if request.decimal_numbers else float
                    )
                except ValueError:
                    raise PullError(f"{where} answered with something that is not JSON") from None
                if not isinstance(body, dict):
                    raise PullError(f"{where} answered with JSON that is not a page object") from None
                return body
            if response.status_code not in RETRIED_STATUSES:
                raise PullError(f"{where} refused the request: {_describe_failure(response, key)}")
            asked = retry_after_s(response)
            if asked is not None and asked > MAX_RETRY_AFTER_S:
                raise PullError(
                    f"{where} asks to wait {asked:.0f} s before trying again (HTTP {response.status_code}); "
                    "pull again later"
                )
            if attempt == MAX_ATTEMPTS:
                raise PullError(
                    f"{where} kept failing after {MAX_ATTEMPTS} tries: {_describe_failure(response, key)}"
                )
            wait = asked if asked is not None else backoff_s(attempt, rng)
        stats.retries += 1
        stats.waited_s += wait
        await sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


async def fetch_pages(
    client: httpx.AsyncClient,
    request: PageRequest,
    key: AdminKey,
    *,
    stats: FetchStats | None = None,
    sleep: Sleep = asyncio.sleep,
    seed: int | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Every page of a paginated report, following `has_more` / `next_page` until the last."""
    stats = stats if stats is not None else FetchStats()
    rng = random.Random(seed)
    page: str | None = None
    seen: set[str] = set()
    while True:
        body = await _get_page(client, request, key, page, stats, sleep, rng)
        stats.pages += 1
        yield body
        next_page = body.get("next_page")
        if not body.get("has_more"):
            return
        if not isinstance(next_page, str) or not next_page:
            raise PullError(f"{_where(request.url)} said has_more but gave no next_page")
        if next_page in seen or stats.pages >= MAX_PAGES:
            raise PullError(f"{_where(request.url)} handed back a page cursor it gave before; stopped")
        seen.add(next_page)
        page = next_page


def new_client() -> httpx.AsyncClient:
    """The client `quotascope pull` uses: a timeout, a user agent, and no key (each request adds it)."""
    return httpx.AsyncClient(timeout=TIMEOUT_S, headers={"User-Agent": USER_AGENT}, follow_redirects=False)
