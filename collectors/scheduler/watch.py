"""Which files of a watched folder to ingest now: new or changed ones that look completely written.

A file is read once it is *settled* (unchanged for `settle_s`) and ends with a newline (or is gzip, or has
been unchanged for `incomplete_line_s`: some exports end without one). A file that grows after it was read
is read again from the start; the ingest is idempotent (each record is stored once, by its key), so a
re-read stores only the new records. A file that failed is tried again when it changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from collectors.ingest.files import GZIP_MAGIC, LOG_SUFFIXES
from models.errors import InputError
from storage.jobs import FileMark


@dataclass(frozen=True, slots=True)
class Seen:
    """A file as the scan found it."""

    path: Path
    size_bytes: int
    mtime_ns: int

    def mark(self, error: str | None = None) -> FileMark:
        if error is None:
            return FileMark(str(self.path), self.size_bytes, self.mtime_ns, "ingested")
        return FileMark(str(self.path), self.size_bytes, self.mtime_ns, "failed", error)


@dataclass(frozen=True, slots=True)
class Scan:
    ready: tuple[Seen, ...]  # new or changed, and settled: read these now (oldest first)
    waiting: tuple[Seen, ...]  # new or changed but apparently still being written
    unchanged: int  # as they were when last read (or when they last failed)


def log_files(folder: Path) -> list[Path]:
    """The folder's log files (by suffix, as `quotascope ingest FOLDER` picks them), hidden ones left out."""
    if not folder.is_dir():
        raise InputError(f"the watched folder {folder} does not exist (or is not a folder)")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(LOG_SUFFIXES):
                found.append(Path(root) / name)
    return sorted(found)


def _complete(path: Path, size: int) -> bool:
    """Whether the file's last byte ends a line (gzip files are checked by the reader instead)."""
    if size == 0:
        return False
    try:
        with path.open("rb") as handle:
            if handle.read(2) == GZIP_MAGIC:
                return True
            handle.seek(size - 1)
            return handle.read(1) in (b"\n", b"\r")
    except OSError:
        return False  # gone or unreadable for now: look again next time


def scan_folder(
    folder: Path,
    marks: Mapping[str, FileMark],
    *,
    settle_s: float,
    incomplete_line_s: float,
    now_ns: int,
) -> Scan:
    ready: list[Seen] = []
    waiting: list[Seen] = []
    unchanged = 0
    for path in log_files(folder):
        try:
            stat = path.stat()
        except OSError:
            continue  # removed between listing and looking
        seen = Seen(path, stat.st_size, stat.st_mtime_ns)
        mark = marks.get(str(path))
        if mark is not None and (mark.size_bytes, mark.mtime_ns) == (seen.size_bytes, seen.mtime_ns):
            unchanged += 1
            continue
        quiet_s = (now_ns - seen.mtime_ns) / 1e9
        if quiet_s >= settle_s and (quiet_s >= incomplete_line_s or _complete(path, seen.size_bytes)):
            ready.append(seen)
        else:
            waiting.append(seen)
    ready.sort(key=lambda s: (s.mtime_ns, str(s.path)))
    return Scan(tuple(ready), tuple(waiting), unchanged)
