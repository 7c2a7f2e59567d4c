"""Importing LiteLLM's public price list (`model_prices_and_context_window.json`) as catalog offers.

LiteLLM keeps the best-maintained public list of per-token prices. Its file maps a model key to USD *per
token* figures and a few limits; this module maps each chat entry to one offer with one version (LiteLLM
does not date its prices, so the version starts on the day the file was read) and writes a TOML catalog a
user passes with `--catalog`. Whatever cannot be expressed faithfully is skipped with a reason, never
approximated. The semantics followed are LiteLLM's own cost calculator's
(`litellm/litellm_core_utils/llm_cost_calc/utils.py` and `tiered_pricing.py`):

- `*_above_<N>k_tokens` prices apply to the whole request once its input exceeds N thousand tokens; an
  absent tier price falls back to the flat one.
- `tiered_pricing` ranges (`start < input <= end`) replace the flat prices; the range from 0 is the base.
- `off_peak_pricing` *replaces* the listed rates inside its windows (absent rates stay standard); windows
  are `hours_utc` spans (a span ending "00:00" runs to midnight; equal start and end cover the day) on ISO
  `weekdays` (1 = Monday) read in `weekday_timezone` (default UTC). quotascope expresses this as one
  multiplier, so the off-peak rates must all be the same multiple of the standard ones.
- A `cache_creation_input_token_cost` of 0 means writes are not billed apart from input (DeepSeek): it
  is left out so writes cost what input does, as quotascope's usage convention expects.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.catalog import MINUTES_PER_DAY, Catalog, Offer
from models.catalog_parse import parse_catalog
from models.errors import CatalogError, InputError
from models.money import MILLION, FxTable
from storage.catalog import render_toml

DEFAULT_ID_PREFIX = "litellm/"
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
_LITELLM_FILE = "LiteLLM model_prices_and_context_window.json"

# flat per-token field -> quotascope price field
_PRICE_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
    "output_cost_per_reasoning_token": "reasoning_output",
}
_TIER_KEY = re.compile(
    r"^(?P<field>" + "|".join(_PRICE_FIELDS) + r")_above_(?P<amount>\d+(?:\.\d+)?)(?P<k>k?)_tokens$"
)
_WEEKDAY_NAMES = {
    "mon": 1,
    "monday": 1,
    "tue": 2,
    "tues": 2,
    "tuesday": 2,
    "wed": 3,
    "wednesday": 3,
    "thu": 4,
    "thur": 4,
    "thurs": 4,
    "thursday": 4,
    "fri": 5,
    "friday": 5,
    "sat": 6,
    "saturday": 6,
    "sun": 7,
    "sunday": 7,
}


class _Skip(Exception):
    """An entry quotascope cannot import faithfully; `reason` groups entries in the report."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Skipped:
    key: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class LitellmImport:
    """What an import produced: the offers (as a TOML document and as parsed values) and what it left out."""

    source_name: str
    as_of: date
    read: int
    offers: tuple[Mapping[str, Any], ...]
    catalog: Catalog
    skipped: tuple[Skipped, ...] = ()
    not_selected: int = 0  # entries of providers not asked for with --provider
    warnings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # offer id -> caveats

    @property
    def imported(self) -> int:
        return len(self.offers)

    def skipped_by_reason(self) -> list[tuple[str, int, list[str]]]:
        """(reason, count, up to three example keys), most frequent first."""
        counts = Counter(s.reason for s in self.skipped)
        examples: dict[str, list[str]] = {}
        for s in self.skipped:
            keys = examples.setdefault(s.reason, [])
            if len(keys) < 3:
                keys.append(s.key)
        return [(reason, n, examples[reason]) for reason, n in counts.most_common()]

    def document(self) -> dict[str, Any]:
        return {"title": f"Imported from {self.source_name}", "offer": list(self.offers)}

    def header(self) -> str:
        return (
            f"Imported from {self.source_name} by `quotascope catalog import-litellm` on "
            f"{self.as_of.isoformat()}.\n"
            f"{self.imported} offers (chat models); {len(self.skipped)} entries skipped"
            f"{f', {self.not_selected} of other providers' if self.not_selected else ''}.\n"
            "Prices are USD per 1M tokens (LiteLLM's per-token figures x 1,000,000). LiteLLM gives no\n"
            "start date, so each version starts on the day the file was read. Batch, flex and priority\n"
            "prices, and limit scopes (LiteLLM does not state them), are not imported.\n"
            "Use it with: quotascope --catalog THIS_FILE ..."
        )


def read_litellm_file(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not LiteLLM's JSON price file") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: is not UTF-8 text") from e
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from e
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e})") from e
    if not isinstance(raw, dict):
        raise InputError(
            f"{path}: expected LiteLLM's JSON object of model entries, got a {type(raw).__name__}"
        )
    return raw


def import_litellm(
    raw: Mapping[str, Any],
    *,
    source_name: str = _LITELLM_FILE,
    as_of: date,
    providers: Sequence[str] = (),
    id_prefix: str = DEFAULT_ID_PREFIX,
) -> LitellmImport:
    """Map every chat entry of LiteLLM's price file to an offer; skip the rest with a reason."""
    wanted = {p.strip().lower() for p in providers if p.strip()}
    offers: list[Mapping[str, Any]] = []
    parsed: dict[str, Offer] = {}
    skipped: list[Skipped] = []
    warnings: dict[str, tuple[str, ...]] = {}
    not_selected = 0
    for key, entry in raw.items():
        if key == "sample_spec":  # LiteLLM's documentation of the fields, not a model
            continue
        if wanted and not (
            isinstance(entry, Mapping) and str(entry.get("litellm_provider", "")).lower() in wanted
        ):
            not_selected += 1
            continue
        try:
            offer, caveats = _offer(key, entry, source_name=source_name, as_of=as_of, id_prefix=id_prefix)
            # round trip: what is written must read back as the catalog does
            catalog = parse_catalog(tomllib.loads(render_toml({"offer": [offer]})), f"{source_name}#{key}")
        except _Skip as e:
            skipped.append(Skipped(key, e.reason, e.detail))
            continue
        except CatalogError as e:
            skipped.append(Skipped(key, "rejected by the catalog's checks", str(e)))
            continue
        offers.append(offer)
        parsed.update(catalog.offers)
        if caveats:
            warnings[str(offer["id"])] = tuple(caveats)
    read = sum(1 for key in raw if key != "sample_spec")
    return LitellmImport(
        source_name,
        as_of,
        read,
        tuple(offers),
        Catalog(parsed, FxTable()),
        tuple(skipped),
        not_selected,
        warnings,
    )


# --------------------------------------------------------------------------------------------- one entry


def _offer(
    key: str, entry: Any, *, source_name: str, as_of: date, id_prefix: str
) -> tuple[dict[str, Any], list[str]]:
    if not isinstance(entry, Mapping):
        raise _Skip("not a JSON object")
    provider = entry.get("litellm_provider")
    if not isinstance(provider, str) or not provider.strip():
        raise _Skip("no litellm_provider")
    mode = entry.get("mode")
    if mode != "chat":
        raise _Skip(f"mode {mode!r} is not chat" if mode is not None else "no mode (not known to be chat)")
    caveats: list[str] = []
    base, tiers = _prices_and_tiers(entry, inclusive=provider == "xai")
    limits = _limits(entry, caveats)
    if base is not None and base["input"] == 0 and base["output"] == 0:
        # LiteLLM writes 0 both for local models and for prices it does not know: never a real $0 bill
        if not limits:
            raise _Skip("input and output prices are both 0 (free or not known) and no limits")
        caveats.append("LiteLLM lists 0 for input and output (free, or not known), so no price is imported")
        base, tiers = None, []
    if base is None and not limits:
        raise _Skip("no per-token price and no limits")
    version: dict[str, Any] = {
        "effective_from": as_of,
        "as_of": as_of,
        "source": _source(key, entry, source_name),
    }
    if base is not None:
        version["prices"] = base
    if tiers:
        version["tiers"] = tiers
    if limits:
        version["limits"] = limits
    off_peak = entry.get("off_peak_pricing")
    if off_peak is not None:
        if base is None:
            raise _Skip("off_peak_pricing without per-token prices")
        if tiers:
            raise _Skip(
                "off_peak_pricing with long-context tiers",
                "LiteLLM bills off-peak rates flat over tiers; quotascope multiplies the tier prices",
            )
        windows, multiplier = _off_peak(off_peak, entry, base)
        if windows:
            version["windows"] = [{"name": "off-peak", **w, "multiplier": multiplier} for w in windows]
    notes = _notes(entry, caveats)
    if notes:
        version["notes"] = notes
    model = key[len(provider) + 1 :] if key.startswith(f"{provider}/") else key
    offer: dict[str, Any] = {
        "id": f"{id_prefix}{key}",
        "provider": provider,
        "model": model,
        "name": f"{key} (LiteLLM)",
        "currency": "USD",
    }
    if model != key:
        offer["aliases"] = [key]
    cache = _cache(entry, base)
    if cache:
        offer["cache"] = cache
    offer["versions"] = [version]
    return offer, caveats


def _per_million(entry: Mapping[str, Any], key: str) -> Decimal | None:
    """LiteLLM's USD per token as USD per 1M tokens; None when absent."""
    if key not in entry or entry[key] is None:
        return None
    raw = entry[key]
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise _Skip("a price is not a number", f"{key} = {raw!r}")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise _Skip("a price is not a number", f"{key} = {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise _Skip("a price is negative or not finite", f"{key} = {raw!r}")
    return (value * MILLION).normalize()


def _price_table(values: Mapping[str, Decimal | None]) -> dict[str, Decimal]:
    table = {name: value for name, value in values.items() if value is not None}
    if table.get("cache_write") == 0:
        del table["cache_write"]  # not billed apart from input (see the module docstring)
    return table


def _flat_prices(entry: Mapping[str, Any]) -> dict[str, Decimal | None]:
    values = {name: _per_million(entry, key) for key, name in _PRICE_FIELDS.items()}
    if values["cached_input"] is None:
        values["cached_input"] = _per_million(entry, "input_cost_per_token_cache_hit")  # DeepSeek's name
    return values


def _prices_and_tiers(
    entry: Mapping[str, Any], *, inclusive: bool
) -> tuple[dict[str, Decimal] | None, list[dict[str, Any]]]:
    """Flat prices and long-context tiers. `inclusive`: the tier applies from the threshold itself (xAI)."""
    flat = _flat_prices(entry)
    if entry.get("tiered_pricing") is not None:
        return _tiered_pricing(entry["tiered_pricing"])
    has_input, has_output = flat["input"] is not None, flat["output"] is not None
    if not has_input and not has_output:
        return None, []
    if has_input != has_output:
        missing = "output_cost_per_token" if has_input else "input_cost_per_token"
        raise _Skip("only one of the input and output prices", f"no {missing}")
    thresholds: dict[int, dict[str, Decimal]] = {}
    for key in entry:
        match = _TIER_KEY.match(key)
        if not match:
            continue
        amount = Decimal(match["amount"]) * (1000 if match["k"] else 1)
        if amount != amount.to_integral_value() or amount <= 0:
            raise _Skip("a long-context threshold is not a whole number of tokens", key)
        value = _per_million(entry, key)
        if value is not None:
            above = int(amount) - 1 if inclusive else int(amount)
            thresholds.setdefault(above, {})[_PRICE_FIELDS[match["field"]]] = value
    tiers = [
        {"above_input_tokens": above, "prices": _price_table({**flat, **override})}
        for above, override in sorted(thresholds.items())
    ]
    return _price_table(flat), tiers


def _tiered_pricing(raw: Any) -> tuple[dict[str, Decimal], list[dict[str, Any]]]:
    if not isinstance(raw, list) or not raw or not all(isinstance(t, Mapping) for t in raw):
        raise _Skip("tiered_pricing is malformed", "expected a list of tier objects")
    ranged: list[tuple[Decimal, dict[str, Decimal]]] = []
    for tier in raw:
        bounds = tier.get("range")
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        ):
            raise _Skip("tiered_pricing is malformed", f"range {bounds!r}")
        prices = {name: _per_million(tier, key) for key, name in _PRICE_FIELDS.items()}
        if prices["input"] is None or prices["output"] is None:
            raise _Skip("tiered_pricing is malformed", "a tier lacks its input or output price")
        ranged.append((Decimal(str(bounds[0])), _price_table(prices)))
    ranged.sort(key=lambda item: item[0])
    if ranged[0][0] != 0:
        raise _Skip("tiered_pricing is malformed", "the first range does not start at 0")
    tiers = []
    for start, tier_prices in ranged[1:]:
        if start != start.to_integral_value():
            raise _Skip("tiered_pricing is malformed", f"range start {start} is not whole")
        tiers.append({"above_input_tokens": int(start), "prices": tier_prices})
    return ranged[0][1], tiers


def _whole(entry: Mapping[str, Any], key: str, caveats: list[str]) -> int | None:
    raw = entry.get(key)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0 or raw != int(raw):
        caveats.append(f"LiteLLM's {key} {raw!r} is not a positive whole number and was left out")
        return None
    return int(raw)


def _limits(entry: Mapping[str, Any], caveats: list[str]) -> dict[str, int]:
    limits = {name: _whole(entry, name, caveats) for name in ("tpm", "rpm")}
    return {name: value for name, value in limits.items() if value is not None}


def _cache(entry: Mapping[str, Any], base: Mapping[str, Decimal] | None) -> dict[str, Any]:
    supported = entry.get("supports_prompt_caching") is True
    priced = base is not None and "cached_input" in base
    fireworks = entry.get("litellm_provider") == "fireworks_ai" and base is not None
    if not supported and not priced and not fireworks:
        return {}
    cache: dict[str, Any] = {"enabled": True}
    if entry.get("litellm_provider") == "fireworks_ai" and not priced:
        # LiteLLM's default for Fireworks (llms/fireworks_ai/cache_pricing.py): cached input at 50 % of input
        cache["read_multiplier"] = Decimal("0.5")
    minimum = entry.get("prompt_cache_min_tokens")
    if (
        isinstance(minimum, (int, float))
        and not isinstance(minimum, bool)
        and minimum > 0
        and minimum == int(minimum)
    ):
        cache["min_tokens"] = int(minimum)
    return cache


def _source(key: str, entry: Mapping[str, Any], source_name: str) -> str:
    upstream = entry.get("source")
    where = f"{source_name}, entry {key!r}"
    if isinstance(upstream, str) and upstream.strip():
        return f"{upstream.strip()} (via {where})"
    return f"{where} (no upstream source given)"


def _notes(entry: Mapping[str, Any], caveats: list[str]) -> str:
    notes = [
        "Imported from LiteLLM; no start date is published, so the version starts on the day it was read."
    ]
    deprecation = entry.get("deprecation_date")
    if isinstance(deprecation, str) and deprecation.strip():
        notes.append(f"LiteLLM lists deprecation_date {deprecation.strip()}.")
    if entry.get("cache_creation_input_token_cost") == 0:
        notes.append("LiteLLM lists a cache-write price of 0: writes are not billed apart from input.")
    long_write = _per_million(entry, "cache_creation_input_token_cost_above_1hr")
    if long_write is not None:
        notes.append(f"1-hour cache writes cost {long_write} USD per 1M tokens (not modelled).")
    window = [
        f"{label} {int(entry[key]):,}"
        for key, label in (("max_input_tokens", "max input"), ("max_output_tokens", "max output"))
        if isinstance(entry.get(key), (int, float)) and not isinstance(entry.get(key), bool)
    ]
    if window:
        notes.append("Context: " + ", ".join(window) + " tokens.")
    notes.extend(f"{c[0].upper()}{c[1:]}." for c in caveats)
    return " ".join(notes)


# --------------------------------------------------------------------------------------------- off-peak


def _off_peak(
    raw: Any, entry: Mapping[str, Any], base: Mapping[str, Decimal]
) -> tuple[list[dict[str, Any]], Decimal]:
    if not isinstance(raw, Mapping):
        raise _Skip("off_peak_pricing is malformed", "expected an object")
    multiplier = _off_peak_multiplier(raw, entry, base)
    offset = _weekday_offset_minutes(raw.get("weekday_timezone"))
    mask = off_peak_mask(raw, offset)
    return compress_mask(mask), multiplier


def _off_peak_multiplier(
    raw: Mapping[str, Any], entry: Mapping[str, Any], base: Mapping[str, Decimal]
) -> Decimal:
    """The one factor turning every standard rate into its off-peak rate, or a skip when there is none."""
    ratios: set[Decimal] = set()
    for key, name in _PRICE_FIELDS.items():
        standard = base.get(name)
        if standard is None:
            continue
        off = _per_million(raw, key)
        if off is None:
            off = standard  # an absent off-peak rate stays standard (a dedicated reasoning rate included)
        if standard == 0:
            if off != 0:
                raise _Skip(
                    "off-peak prices are not one multiple of the standard prices", f"{key}: 0 -> {off}"
                )
            continue
        ratios.add((off / standard).normalize())
    if len(ratios) != 1:
        detail = ", ".join(sorted(str(r) for r in ratios)) or "no priced field"
        raise _Skip("off-peak prices are not one multiple of the standard prices", f"ratios {detail}")
    return ratios.pop()


def _weekday_offset_minutes(zone: Any) -> int:
    """Minutes added to UTC to read the weekday on LiteLLM's `weekday_timezone` calendar (fixed offsets)."""
    if zone is None or (isinstance(zone, str) and not zone.strip()):
        return 0
    if not isinstance(zone, str):
        raise _Skip("off_peak_pricing is malformed", f"weekday_timezone {zone!r}")
    try:
        tz = ZoneInfo(zone.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise _Skip("off-peak weekday_timezone is unknown", zone) from None
    year = datetime.now(UTC).year
    offsets = {
        datetime(year, month, 15, tzinfo=UTC).astimezone(tz).utcoffset() or timedelta(0)
        for month in (1, 4, 7, 10)
    }
    if len(offsets) != 1:
        raise _Skip("off-peak weekday_timezone has daylight saving", zone)
    return int(offsets.pop().total_seconds() // 60)


def _clock(text: str) -> int:
    parsed = datetime.strptime(text.strip(), "%H:%M").time()
    return parsed.hour * 60 + parsed.minute


def _spans(value: Any) -> list[tuple[int, int]]:
    texts = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if texts is None or not all(isinstance(t, str) for t in texts):
        raise _Skip("off_peak_pricing is malformed", f"hours_utc {value!r}")
    spans = []
    for text in texts:
        try:
            start_text, end_text = text.split("-")
            spans.append((_clock(start_text), _clock(end_text)))
        except ValueError:
            raise _Skip("off_peak_pricing is malformed", f"hours_utc span {text!r}") from None
    return spans


def _in_spans(minute: int, spans: Iterable[tuple[int, int]]) -> bool:
    # LiteLLM: start inclusive, end exclusive; a span wraps past midnight; equal ends cover the day
    for start, end in spans:
        if start < end:
            if start <= minute < end:
                return True
        elif minute >= start or minute < end:
            return True
    return False


def _iso_weekdays(value: Any) -> set[int]:
    if value is None:
        return set(range(1, 8))
    if not isinstance(value, list):
        raise _Skip("off_peak_pricing is malformed", f"weekdays {value!r}")
    days = set()
    for day in value:
        if isinstance(day, int) and not isinstance(day, bool) and 1 <= day <= 7:
            days.add(day)
        elif isinstance(day, str) and day.strip().lower() in _WEEKDAY_NAMES:
            days.add(_WEEKDAY_NAMES[day.strip().lower()])
        else:
            raise _Skip("off_peak_pricing is malformed", f"weekday {day!r}")
    return days


def off_peak_mask(raw: Mapping[str, Any], weekday_offset_minutes: int = 0) -> list[bool]:
    """For each UTC minute of the week (Monday 00:00 first), whether LiteLLM's off-peak rules hold."""
    rules: list[tuple[list[tuple[int, int]], set[int]]] = []
    if raw.get("hours_utc") is not None:
        rules.append((_spans(raw["hours_utc"]), set(range(1, 8))))
    windows = raw.get("windows", [])
    if not isinstance(windows, list) or not all(isinstance(w, Mapping) for w in windows):
        raise _Skip("off_peak_pricing is malformed", "windows must be a list of objects")
    rules.extend((_spans(w.get("hours_utc")), _iso_weekdays(w.get("weekdays"))) for w in windows)
    mask = [False] * MINUTES_PER_WEEK
    for week_minute in range(MINUTES_PER_WEEK):
        minute = week_minute % MINUTES_PER_DAY
        local_day = ((week_minute + weekday_offset_minutes) // MINUTES_PER_DAY) % 7 + 1  # ISO weekday
        mask[week_minute] = any(local_day in days and _in_spans(minute, spans) for spans, days in rules)
    return mask


def compress_mask(mask: Sequence[bool]) -> list[dict[str, Any]]:
    """A week mask as quotascope windows: each UTC day's runs, days with the same runs grouped together."""
    by_runs: dict[tuple[str, ...], list[int]] = {}
    for day in range(7):
        runs: list[str] = []
        start: int | None = None
        for minute in range(MINUTES_PER_DAY + 1):
            inside = minute < MINUTES_PER_DAY and mask[day * MINUTES_PER_DAY + minute]
            if inside and start is None:
                start = minute
            elif not inside and start is not None:
                runs.append(f"{_hhmm(start)}-{_hhmm(minute)}")
                start = None
        if runs:
            by_runs.setdefault(tuple(runs), []).append(day)
    return [{"hours_utc": list(runs), "weekdays": days} for runs, days in by_runs.items()]


def _hhmm(minute: int) -> str:
    if minute == MINUTES_PER_DAY:
        return "24:00"
    return time(minute // 60, minute % 60).strftime("%H:%M")
