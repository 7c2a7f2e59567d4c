"""The OTLP/HTTP receiver: OpenTelemetry GenAI spans in, usage rows out (`quotascope otlp`).

Which spans are LLM calls and what each one means is decided in `models.genai_spans`; this package decodes
OTLP bodies (`decode`), checks and stores the rows as the ingest does (`writer`), answers as the OTLP
specification says (`app`) and runs under uvicorn (`server`).
"""

from __future__ import annotations

from collectors.otlp.server import DEFAULT_PORT, OtlpOptions, OtlpServer
from models.genai_spans import parse_attribution

__all__ = ["DEFAULT_PORT", "OtlpOptions", "OtlpServer", "parse_attribution"]
