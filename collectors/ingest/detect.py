"""`--format auto`: tell a log's container (JSON lines, one JSON document, CSV) and record format from its
first megabyte, and say in words what was seen so the user can check the choice."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Literal

from models.errors import InputError

Container = Literal["empty", "jsonl", "json", "csv"]
DEEP_JSON_REASON = "JSON nested too deeply to read (deeper than Python's parser goes, about 1,000 levels)"


def load_json(text: str) -> Any:
    """`json.loads`, with nesting too deep for Python's parser a ValueError like any other bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(DEEP_JSON_REASON) from None


@dataclass(frozen=True, slots=True)
class Detection:
    format: str  # one of formats.FORMATS, or "empty"
    container: Container
    description: str  # what was seen, for the user
    delimiter: str = ","
    columns: tuple[str, ...] = ()  # a CSV's header
    root: str = ""  # where the provider response sits in each record ("", "response", ...)


def _first_lines(sample: str, limit: int = 50) -> list[str]:
    """The first `limit` lines that are not blank."""
    found: list[str] = []
    for line in sample.splitlines():
        if line.strip():
            found.append(line)
            if len(found) >= limit:
                break
    return found


def _container(sample: str) -> Container:
    stripped = sample.lstrip()
    if not stripped:
        return "empty"
    if stripped[0] == "[":
        return "json"
    if stripped[0] == "{":
        first = _first_lines(sample, 1)[0].strip()
        try:
            load_json(first)
            return "jsonl"
        except ValueError:
            pass
        if first in ("{", "[") or first.endswith(("{", "[", ",", ":")):
            return "json"  # a pretty-printed document
        return "jsonl"  # JSON lines whose first line is broken: it will be rejected, the rest read
    return "csv"


def _records(sample: str, container: Container) -> list[Any]:
    """Whole records found in the sample (the first few)."""
    found: list[Any] = []
    if container == "jsonl":
        for line in _first_lines(sample):
            try:
                found.append(load_json(line))
            except ValueError:
                continue
    elif container == "json":
        try:
            document = load_json(sample)
        except ValueError:
            document = None
            stripped = sample.lstrip()
            if stripped.startswith("["):
                try:
                    element, _ = json.JSONDecoder().raw_decode(stripped[1:].lstrip())
                    found.append(element)
                except (ValueError, RecursionError):
                    pass
        if isinstance(document, list):
            found.extend(document[:5])
        elif document is not None:
            found.append(document)
    return found


def _unwrap(record: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The provider response inside an envelope, how it was wrapped, and its path."""
    response = record.get("response")
    if isinstance(response, dict):
        body = response.get("body")
        if isinstance(body, dict):
            return body, "OpenAI Batch output lines", "response.body"
        return response, "in an envelope with timestamp/tags", "response"
    result = record.get("result")
    if isinstance(result, dict) and isinstance(result.get("message"), dict):
        return result["message"], "Anthropic Message Batches results", "result.message"
    return record, "", ""


def classify(record: Any) -> tuple[str, str, str] | None:
    """(format, description, root) of one record, or None if it looks like none of them."""
    if not isinstance(record, dict):
        return None
    if record.get("object") == "page" or (
        isinstance(record.get("data"), list)
        and any(isinstance(b, dict) and b.get("object") == "bucket" for b in record["data"])
    ):
        return "openai-usage-export", "OpenAI organization usage export pages", ""
    if record.get("object") == "bucket" or "num_model_requests" in record:
        return "openai-usage-export", "OpenAI organization usage buckets", ""
    if "request_id" in record and ("startTime" in record or "spend" in record):
        return "litellm-spend", "LiteLLM SpendLogs rows", ""
    inner, wrapping, root = _unwrap(record)
    raw_usage = inner.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    suffix = f", {wrapping}" if wrapping else ""
    if inner.get("type") == "message" or ("input_tokens" in usage and "prompt_tokens" not in usage):
        return "anthropic", f"Anthropic Messages responses{suffix}", root
    if (
        "prompt_tokens" in usage
        or "choices" in inner
        or str(inner.get("object", "")).startswith("chat.completion")
    ):
        kinds = []
        if "prompt_cache_hit_tokens" in usage:
            kinds.append("DeepSeek cache fields")
        if inner.get("object") == "chat.completion.chunk":
            kinds.append("streamed final-usage chunks")
        detail = f" ({', '.join(kinds)})" if kinds else ""
        return "openai", f"OpenAI-compatible chat completions{detail}{suffix}", root
    return None


def _sniff(text: str) -> tuple[str, str] | None:
    """Guess from key names when no whole record fits in the sample (a large pretty-printed document)."""
    if '"organization.usage.completions' in text or '"num_model_requests"' in text:
        return "openai-usage-export", "OpenAI organization usage export (by its field names)"
    if '"request_id"' in text and '"startTime"' in text:
        return "litellm-spend", "LiteLLM SpendLogs (by its field names)"
    if '"cache_read_input_tokens"' in text or '"type": "message"' in text or '"type":"message"' in text:
        return "anthropic", "Anthropic Messages responses (by their field names)"
    if '"prompt_tokens"' in text or '"chat.completion' in text:
        return "openai", "OpenAI-compatible chat completions (by their field names)"
    return None


def _csv_header(sample: str) -> tuple[list[str], str]:
    first = sample.splitlines()[0] if sample else ""
    delimiter = "\t" if "\t" in first and "," not in first else ","
    header = next(csv.reader(io.StringIO(first), delimiter=delimiter), [])
    return [h.strip() for h in header], delimiter


def detect(sample: bytes, name: str, forced: str | None = None) -> Detection:
    """The container and format of a file from its first bytes (`forced` overrides the format)."""
    text = sample.decode("utf-8", errors="replace")
    container = _container(text)
    if container == "empty":
        return Detection("empty", "empty", "an empty file")
    if container == "csv":
        header, delimiter = _csv_header(text)
        columns = tuple(header)
        if forced:
            return Detection(forced, "csv", f"{forced} (as asked), CSV", delimiter, columns)
        if "request_id" in header and ("startTime" in header or "spend" in header):
            return Detection("litellm-spend", "csv", "LiteLLM SpendLogs CSV export", delimiter, columns)
        if len(header) < 2:
            raise InputError(
                f"{name}: cannot tell its format: it is neither JSON nor CSV with a header "
                "(pass --format, or check the file)"
            )
        shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
        return Detection("csv", "csv", f"CSV with columns {shown}", delimiter, columns)
    where = "JSON lines" if container == "jsonl" else "a JSON document"
    records = _records(text, container)
    if forced:
        roots = [found[2] for found in map(classify, records) if found and found[0] == forced]
        return Detection(forced, container, f"{forced} (as asked), {where}", root=roots[0] if roots else "")
    for record in records:
        found = classify(record)
        if found:
            return Detection(found[0], container, f"{found[1]}, {where}", root=found[2])
    sniffed = _sniff(text)
    if sniffed:
        return Detection(sniffed[0], container, f"{sniffed[1]}, {where}")
    raise InputError(
        f"{name}: cannot tell which log format this {where} is "
        "(pass --format openai|anthropic|openai-usage-export|litellm-spend|csv)"
    )
