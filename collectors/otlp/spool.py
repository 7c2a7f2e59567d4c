"""A durable spool between the receiver's checks and the database: acknowledge once spooled, commit later.

With a spool (`quotascope otlp --spool DIR`), a request is acknowledged once its checked rows are appended to
the spool and fsynced (one fsync for every request checked together: group commit), not once the database
commit holding them is done. A drain thread then stores what is spooled in large batches (one transaction
each, through `storage.usage.store_batch`), so the database's fixed cost per transaction is paid per many
requests instead of per the few an exporter has in flight.

Files (in DIR, created 0700; the files 0600): `NNNNNNNNNN.seg`, the segments, appended to in order; each entry
is a frame `QSP1`, payload length (8 bytes, little-endian), CRC-32 of the payload (4 bytes), payload. The
payload is the length of a JSON header (4 bytes), the header (the entry's rejects: line, reason, excerpt) and
the rows as an Arrow IPC stream (the canonical columns `storage.normalise` made; no span content is in them,
as none is in the rows). `committed` says up to where (segment, offset) the database holds the entries,
replaced atomically after each commit; segments wholly before it are deleted. `lock` is held (flock) while
a receiver uses the spool, so two cannot drain one spool.

After a kill (-9 included) the next start replays every entry after `committed`: an entry cut short by the
kill fails its length or CRC and ends the replay (its requests were never acknowledged: the answer waits for
the fsync). Entries committed but not yet marked (a kill between the commit and the mark) are stored again
under their record keys, so the database skips their rows as duplicates: every acknowledged span is stored
exactly once. (Their rejects, refused spans kept with their reasons, are then kept a second time: the one
thing a replay can repeat; the replayed source's counts say so.)
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from models.errors import InputError
from storage.usage import Reject

MAGIC = b"QSP1"
_FRAME = struct.Struct("<4sQI")  # magic, payload length, CRC-32 of the payload
_HEADER_LEN = struct.Struct("<I")
SEGMENT_BYTES = 64 << 20  # a new segment past this size, so drained ones can be deleted


class SpoolError(InputError):
    """The spool cannot be used (another receiver holds it, or it cannot be written)."""


@dataclass(frozen=True)
class Position:
    """A place in the spool: a segment's number and a byte offset in it."""

    segment: int
    offset: int


@dataclass(frozen=True)
class Entry:
    """One group commit's checked rows and refused spans, and where the spool is after it."""

    rows: pa.Table | None
    rejects: list[Reject]
    end: Position

    @property
    def records(self) -> int:
        return (self.rows.num_rows if self.rows is not None else 0) + len(self.rejects)


def encode(rows: pa.Table | None, rejects: list[Reject]) -> bytes:
    header = json.dumps([[r.line_no, r.reason, r.excerpt] for r in rejects]).encode()
    parts = [_HEADER_LEN.pack(len(header)), header]
    if rows is not None and rows.num_rows:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, rows.schema) as stream:
            stream.write_table(rows)
        parts.append(sink.getvalue().to_pybytes())
    payload = b"".join(parts)
    return _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes) -> tuple[pa.Table | None, list[Reject]]:
    (size,) = _HEADER_LEN.unpack_from(payload, 0)
    start = _HEADER_LEN.size
    rejects = [Reject(int(n), str(r), str(e)) for n, r, e in json.loads(payload[start : start + size])]
    body = payload[start + size :]
    rows = pa.ipc.open_stream(body).read_all() if body else None
    return rows, rejects


def entries_in(data: bytes, offset: int, segment: int) -> Iterator[Entry]:
    """Each whole, intact entry of a segment's bytes from `offset`; stops at a torn one."""
    for payload, end in _frames(data, offset):
        rows, rejects = _decode(payload)
        yield Entry(rows, rejects, Position(segment, end))


def segment_path(folder: Path, segment: int) -> Path:
    return folder / f"{segment:010d}.seg"


def segments(folder: Path) -> list[int]:
    """The numbers of the segments in a spool folder, in order."""
    return sorted(int(p.stem) for p in folder.glob("*.seg") if p.stem.isdigit())


def read_mark(folder: Path) -> Position:
    """Up to where the database holds the spool's entries."""
    try:
        mark = json.loads((folder / "committed").read_text())
    except FileNotFoundError:
        return Position(0, 0)
    return Position(int(mark["segment"]), int(mark["offset"]))


def mark_committed(folder: Path, position: Position) -> None:
    """Record that the database holds every entry up to `position` (atomically); delete the segments
    before it."""
    temporary = folder / "committed.tmp"
    with temporary.open("w") as out:
        json.dump({"segment": position.segment, "offset": position.offset}, out)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(folder / "committed")
    sync_folder(folder)
    for segment in segments(folder):
        if segment < position.segment:
            segment_path(folder, segment).unlink(missing_ok=True)


def sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _frames(data: bytes, offset: int) -> Iterator[tuple[bytes, int]]:
    """Each whole, intact frame's payload from `offset`, and the offset after it; stops at a torn one."""
    while offset + _FRAME.size <= len(data):
        magic, length, crc = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        if magic != MAGIC or start + length > len(data):
            return
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            return
        offset = start + length
        yield payload, offset


class Spool:
    """The files of one spool directory: append (with fsync), replay, mark committed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = (folder / "lock").open("a+b")  # held (flock) for the spool's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise SpoolError(f"another receiver is using the spool {folder}") from None
        self.committed = read_mark(folder)
        existing = segments(folder)
        # never append after what a kill may have cut short: a new segment for this run
        self.first_segment = max([self.committed.segment, *existing]) + 1
        self._segment = self.first_segment
        self._file = self._open_segment(self._segment)
        self._offset = 0

    def _open_segment(self, segment: int) -> int:
        fd = os.open(segment_path(self.folder, segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        sync_folder(self.folder)
        return fd

    def replay(self) -> Iterator[Entry]:
        """The entries after the committed mark in the segments of earlier runs, oldest first (what a
        previous run acknowledged and did not commit, or committed and did not mark)."""
        for segment in segments(self.folder):
            if segment < self.committed.segment or segment >= self.first_segment:
                continue
            data = segment_path(self.folder, segment).read_bytes()
            start = self.committed.offset if segment == self.committed.segment else 0
            yield from entries_in(data, start, segment)

    def append(self, frame: bytes) -> Position:
        """Write one encoded entry and fsync it; where the spool ends after it."""
        return self.append_many([frame])[0]

    def append_many(self, frames: list[bytes]) -> list[Position]:
        """Write encoded entries in order and fsync once for them all (a segment filled on the way is
        fsynced before it is closed); where the spool ends after each."""
        ends = []
        for frame in frames:
            if self._offset >= SEGMENT_BYTES:
                os.fdatasync(self._file)
                os.close(self._file)
                self._segment += 1
                self._file = self._open_segment(self._segment)
                self._offset = 0
            view = memoryview(frame)
            while view:
                written = os.write(self._file, view)
                view = view[written:]
            self._offset += len(frame)
            ends.append(Position(self._segment, self._offset))
        os.fdatasync(self._file)
        return ends

    def mark_committed(self, position: Position) -> None:
        """Record that the database holds every entry up to `position`; delete the segments before it."""
        mark_committed(self.folder, position)
        self.committed = position

    def close(self) -> None:
        os.close(self._file)
        if self._offset == 0 and self.committed.segment < self._segment:
            segment_path(self.folder, self._segment).unlink(missing_ok=True)  # this run spooled nothing
        self._lock.close()
