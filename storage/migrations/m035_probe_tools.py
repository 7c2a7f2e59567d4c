"""Probe runs measured by other tools and imported from their result files (`quotascope probe import`).

`tool` says which client measured a run (quotascope, aiperf, guidellm, vllm) and `ttft_definition` how that
tool times its first token, stored with the run because the same endpoint reads differently under each
(runs stored before this migration are quotascope's; their definition is `models.probe.TTFT_DEFINITIONS`'s).
`source_id` is the import (a `sources` row, with its read/stored/duplicate/rejected counts and its rejects in
`rejects`) the run came from; NULL for quotascope's own probes.
"""

from __future__ import annotations

NUMBER = 35
NAME = "probe_tools"

SQL = """
ALTER TABLE probe_runs ADD COLUMN tool VARCHAR DEFAULT 'quotascope';
ALTER TABLE probe_runs ADD COLUMN ttft_definition VARCHAR;
ALTER TABLE probe_runs ADD COLUMN source_id BIGINT;
"""
