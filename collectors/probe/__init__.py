"""The endpoint probe: what an OpenAI-compatible endpoint really delivers, and whether its model is the one
paid for. A scheduler job calls it like this:

    async with make_client(endpoint, plan) as client:
        run = await run_probe(client, endpoint, plan, offer=catalog.get(endpoint.offer))
    write_probe_run(db_path, run)          # storage.probes
"""

from __future__ import annotations

from collectors.probe.endpoints import Endpoint, EndpointError, find_endpoint, load_endpoints, parse_endpoints
from collectors.probe.runner import make_client, run_probe

__all__ = [
    "Endpoint",
    "EndpointError",
    "find_endpoint",
    "load_endpoints",
    "make_client",
    "parse_endpoints",
    "run_probe",
]
