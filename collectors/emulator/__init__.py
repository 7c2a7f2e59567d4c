"""A local OpenAI-compatible provider with configurable timing, limits, prefix cache and faults.

Tests and the demo probe it; `quotascope emulate` serves it. See `app.py` for what a request goes through.
"""

from __future__ import annotations

from collectors.emulator.app import Emulator, build_app
from collectors.emulator.billing import Billing
from collectors.emulator.config import EmulatorConfig
from collectors.emulator.server import EmulatorServer, bind, serve

__all__ = ["Billing", "Emulator", "EmulatorConfig", "EmulatorServer", "bind", "build_app", "serve"]
