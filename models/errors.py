"""The one error family a user sees: one clear sentence, never a traceback."""

from __future__ import annotations


class QuotascopeError(Exception):
    """Base of every error quotascope reports to a user."""

    exit_code = 1


class InputError(QuotascopeError):
    """The user asked for something that makes no sense (negative tokens, zero limits, unknown offer)."""

    exit_code = 2


class CatalogError(InputError):
    """A catalog file or entry is malformed; the message names the file, the offer and the field."""

    def __init__(self, message: str, *, origin: str = "", offer: str = "", field: str = "") -> None:
        self.origin = origin
        self.offer = offer
        self.field = field
        where = ", ".join(
            part
            for part in (
                origin and f"in {origin}",
                offer and f"offer {offer!r}",
                field and f"field {field!r}",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class UnpricedError(InputError):
    """No price is known for what was asked (an unknown model, or an offer that publishes none)."""
