"""Usage-log ingestion: read provider and gateway logs, normalise them to the canonical usage record, and
store each record once (DESIGN.md, "Canonical usage record").

`ingest_paths` is the library entry point the CLI and the scheduler call.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from collectors.ingest.files import expand_paths
from collectors.ingest.formats import FORMATS
from collectors.ingest.pipeline import FileResult, IngestOptions, ingest_file
from collectors.ingest.progress import Progress
from collectors.ingest.records import check_csv_map
from models.errors import InputError
from storage.store import StoreLike
from storage.usage import IngestContext, Normaliser

__all__ = ["FORMATS", "FileResult", "IngestOptions", "ingest_paths", "load_salt"]


def load_salt(path: Path) -> str:
    """The local secret that user ids and keys are hashed with; created (owner-readable only) on first use."""
    try:
        salt = path.read_text().strip()
        if salt:
            return salt
    except FileNotFoundError:
        pass
    except OSError as e:
        raise InputError(f"cannot read the salt file {path}: {e.strerror}") from e
    salt = secrets.token_hex(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_salt(path)  # another process created it first
    except OSError as e:
        raise InputError(f"cannot create the salt file {path}: {e.strerror}") from e
    with os.fdopen(fd, "w") as handle:
        handle.write(salt + "\n")
    return salt


def ingest_paths(
    db: StoreLike,
    paths: Sequence[Path],
    *,
    salt: str,
    tags: Mapping[str, str] | None = None,
    options: IngestOptions | None = None,
    progress: Progress | None = None,
    notice: Callable[[str], None] = lambda _: None,
    on_file: Callable[[FileResult], None] = lambda _: None,
) -> list[FileResult]:
    """Ingest every file (a folder stands for its log files); `on_file` hears of each as it finishes.

    A file that cannot be read is one reject with its reason (`FileResult.unreadable`) and the next file is
    read; only a mistake in the command (a missing path, an unknown --csv-map field) or the database's
    trouble raises."""
    chosen = options or IngestOptions()
    check_csv_map(chosen.csv_map)
    files = expand_paths(list(paths), notice)
    context = IngestContext(salt=salt, tags=dict(tags or {}), default_time=chosen.default_time)
    normaliser = Normaliser()
    results = []
    try:
        for path in files:
            result = ingest_file(db, path, context, normaliser, options, progress)
            on_file(result)
            results.append(result)
    finally:
        normaliser.close()
    return results
