"""Pulling the providers' own usage and cost reports through their admin APIs (`quotascope pull`)."""

from __future__ import annotations

from collectors.pull.apis import KINDS, PullKind
from collectors.pull.http import AdminKey, PullError, new_client
from collectors.pull.run import PullResult, pull, pull_kind

__all__ = ["KINDS", "AdminKey", "PullError", "PullKind", "PullResult", "new_client", "pull", "pull_kind"]
