"""Endpoints the probe can measure, from a TOML file (setting `endpoints_file`) or from command-line options.

    [[endpoint]]
    name = "ark-r1"
    base_url = "https://ark.cn-beijing.volces.com/api/v3"
    model = "deepseek-r1-250120"
    api_key_env = "ARK_API_KEY"          # the key is read from this variable, never from the file
    offer = "volcengine-ark/deepseek-r1" # catalog offer that prices the probe's own tokens
    headers = { "X-Team" = "search" }
    read_timeout_s = 60

The key itself never appears in the file, the database, a log line, an error message or the screen.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from models.errors import InputError

_FIELDS = (
    "name",
    "base_url",
    "model",
    "api_key_env",
    "api_key_header",
    "headers",
    "connect_timeout_s",
    "read_timeout_s",
    "total_timeout_s",
    "offer",
    "max_tokens_field",
)
_TIMEOUTS = {"connect_timeout_s": 10.0, "read_timeout_s": 60.0, "total_timeout_s": 600.0}
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")


class EndpointError(InputError):
    """An endpoints file or entry is malformed; the message names the file, the endpoint and the field."""

    def __init__(self, message: str, *, origin: str = "", endpoint: str = "", field: str = "") -> None:
        where = ", ".join(
            part
            for part in (
                origin and f"in {origin}",
                endpoint and f"endpoint {endpoint!r}",
                field and f"field {field!r}",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    base_url: str  # up to and including the API version, e.g. https://api.deepseek.com/v1
    model: str
    api_key_env: str | None = None  # None: send no key (a local server)
    api_key_header: str = (
        "authorization"  # "authorization" sends `Bearer KEY`; any other name sends KEY as is
    )
    headers: Mapping[str, str] = field(default_factory=dict)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0  # the seed article saw failures at 5 s and none at 30 s
    total_timeout_s: float = 600.0
    offer: str | None = None
    max_tokens_field: str = "max_tokens"  # the portable name; OpenAI's o-series wants max_completion_tokens
    origin: str = ""

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise EndpointError(
                f"base_url must be an http(s) URL like https://api.deepseek.com/v1, got {self.public_url!r}",
                origin=self.origin,
                endpoint=self.name,
                field="base_url",
            )
        if self.max_tokens_field not in MAX_TOKENS_FIELDS:
            raise EndpointError(
                f"must be one of {', '.join(MAX_TOKENS_FIELDS)}",
                origin=self.origin,
                endpoint=self.name,
                field="max_tokens_field",
            )
        for name in _TIMEOUTS:
            if not getattr(self, name) > 0:
                raise EndpointError("must be above zero", origin=self.origin, endpoint=self.name, field=name)
        if any(h.lower() == self.api_key_header.lower() for h in self.headers):
            raise EndpointError(
                f"the {self.api_key_header} header carries the key from api_key_env; do not set it here",
                origin=self.origin,
                endpoint=self.name,
                field="headers",
            )

    @property
    def url(self) -> str:
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/chat/completions", fragment=""))

    @property
    def public_url(self) -> str:
        """The base URL without user info, query or fragment: safe to store and show."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        try:
            port = parts.port
        except ValueError:
            port = None
        netloc = f"{host}:{port}" if port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout_s, read=self.read_timeout_s, write=self.read_timeout_s, pool=None
        )

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The key from the named environment variable; an unset variable is an error naming it."""
        if self.api_key_env is None:
            return None
        value = (os.environ if environ is None else environ).get(self.api_key_env, "").strip()
        if not value:
            raise InputError(
                f"environment variable {self.api_key_env} is not set; endpoint {self.name!r} reads its "
                "API key from it"
            )
        return value

    def request_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"accept": "text/event-stream", **self.headers}
        if api_key is not None:
            name = self.api_key_header.lower()
            headers[name] = f"Bearer {api_key}" if name == "authorization" else api_key
        return headers


def parse_endpoints(raw: Mapping[str, Any], origin: str) -> dict[str, Endpoint]:
    """`[[endpoint]]` tables into endpoints by name."""
    extra = sorted(set(raw) - {"endpoint"})
    if extra:
        raise EndpointError(
            "unknown top-level key (expected [[endpoint]] tables)", origin=origin, field=extra[0]
        )
    tables = raw.get("endpoint", [])
    if not isinstance(tables, list):
        raise EndpointError("must be an array of tables ([[endpoint]])", origin=origin, field="endpoint")
    endpoints: dict[str, Endpoint] = {}
    for index, table in enumerate(tables):
        endpoint = _endpoint(table, origin, index)
        if endpoint.name in endpoints:
            raise EndpointError("is defined twice", origin=origin, endpoint=endpoint.name, field="name")
        endpoints[endpoint.name] = endpoint
    return endpoints


def _endpoint(table: Any, origin: str, index: int) -> Endpoint:
    label = f"endpoint[{index}]"
    if not isinstance(table, Mapping):
        raise EndpointError("must be a table", origin=origin, field=label)
    name = table.get("name")
    where = {"origin": origin, "endpoint": name if isinstance(name, str) else label}
    extra = sorted(set(table) - set(_FIELDS))
    if extra:
        raise EndpointError(f"unknown field (allowed: {', '.join(_FIELDS)})", **where, field=extra[0])

    def text(key: str, required: bool = True) -> str | None:
        value = table.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise EndpointError("is required and must be a non-empty string", **where, field=key)
        return value.strip()

    headers = table.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise EndpointError(
            'must be a table of strings, e.g. { "X-Team" = "search" }', **where, field="headers"
        )
    timeouts: dict[str, float] = {}
    for key, default in _TIMEOUTS.items():
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise EndpointError(f"must be a number of seconds above zero, got {value!r}", **where, field=key)
        timeouts[key] = float(value)
    return Endpoint(
        name=str(text("name")),
        base_url=str(text("base_url")),
        model=str(text("model")),
        api_key_env=text("api_key_env", required=False),
        api_key_header=text("api_key_header", required=False) or "authorization",
        headers=dict(headers),
        offer=text("offer", required=False),
        max_tokens_field=text("max_tokens_field", required=False) or "max_tokens",
        origin=origin,
        **timeouts,
    )


def load_endpoints(path: Path) -> dict[str, Endpoint]:
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise EndpointError(
            "no such file; create it or set QUOTASCOPE_ENDPOINTS (see `quotascope probe --help`)",
            origin=str(path),
        ) from None
    except IsADirectoryError:
        raise EndpointError("is a folder, not a TOML file", origin=str(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise EndpointError(f"is not valid TOML: {e}", origin=str(path)) from e
    except UnicodeDecodeError as e:
        raise EndpointError("is not UTF-8 text", origin=str(path)) from e
    return parse_endpoints(raw, str(path))


def find_endpoint(path: Path, name: str) -> Endpoint:
    endpoints = load_endpoints(path)
    if name not in endpoints:
        known = ", ".join(sorted(endpoints)) or "none"
        raise InputError(f"no endpoint {name!r} in {path} (known: {known})")
    return endpoints[name]


def adhoc_name(base_url: str, model: str) -> str:
    """The name an endpoint probed without an endpoints file goes by: `model@host[:port]` (no credentials).
    Imported peers' runs of the same URL and model take it too, so they land beside the probe's."""
    host = base_url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[2]
    return f"{model}@{host}"
