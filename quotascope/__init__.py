"""quotascope: cost-and-quota analytics for LLM APIs. This package is the composition root (CLI, settings)."""

__version__ = "0.1.0"
