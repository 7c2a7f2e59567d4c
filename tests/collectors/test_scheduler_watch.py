"""Which files of a watched folder are read: new or changed, settled, and (usually) ending with a newline."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from collectors.scheduler.watch import log_files, scan_folder
from models.errors import InputError
from storage.jobs import FileMark

NOW_NS = 1_800_000_000 * 10**9
LINE = b'{"id": "c1", "model": "deepseek-chat", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}\n'


def put(path: Path, data: bytes, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    mtime_ns = NOW_NS - int(age_s * 1e9)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def scan(
    folder: Path, marks: dict[str, FileMark] | None = None, settle_s: float = 2.0
) -> tuple[list[str], ...]:
    result = scan_folder(folder, marks or {}, settle_s=settle_s, incomplete_line_s=60.0, now_ns=NOW_NS)
    return [s.path.name for s in result.ready], [s.path.name for s in result.waiting], [result.unchanged]


def test_settled_complete_files_are_ready_oldest_first(tmp_path: Path) -> None:
    put(tmp_path / "b.jsonl", LINE * 3, age_s=10)
    put(tmp_path / "a.jsonl", LINE * 2, age_s=5)
    put(tmp_path / "sub" / "c.csv", b"ts,model\n2026-11-23,x\n", age_s=30)
    assert scan(tmp_path) == (["c.csv", "b.jsonl", "a.jsonl"], [], [0])


def test_a_file_still_being_written_waits(tmp_path: Path) -> None:
    put(tmp_path / "fresh.jsonl", LINE, age_s=0.5)  # modified half a second ago
    put(tmp_path / "cut.jsonl", LINE + LINE[:20], age_s=10)  # no newline at the end yet
    put(tmp_path / "empty.jsonl", b"", age_s=10)
    assert scan(tmp_path) == ([], ["cut.jsonl", "empty.jsonl", "fresh.jsonl"], [0])
    # a file that never gets its final newline is read once it has been quiet for incomplete_line_s
    put(tmp_path / "cut.jsonl", LINE + LINE[:20], age_s=61)
    assert scan(tmp_path)[0] == ["cut.jsonl"]
    # gzip is checked by the reader, not by its last byte
    put(tmp_path / "day.jsonl.gz", gzip.compress(LINE * 4), age_s=10)
    assert "day.jsonl.gz" in scan(tmp_path)[0]


def test_only_new_or_changed_files_are_read_again(tmp_path: Path) -> None:
    a = put(tmp_path / "a.jsonl", LINE * 2, age_s=10)
    b = put(tmp_path / "b.jsonl", LINE * 2, age_s=10)
    c = put(tmp_path / "c.jsonl", LINE, age_s=10)
    stat_a, stat_b, stat_c = a.stat(), b.stat(), c.stat()
    marks = {
        str(a): FileMark(str(a), stat_a.st_size, stat_a.st_mtime_ns, "ingested"),
        str(b): FileMark(str(b), stat_b.st_size, stat_b.st_mtime_ns, "failed", "broken"),
        str(c): FileMark(str(c), stat_c.st_size, stat_c.st_mtime_ns, "ingested"),
    }
    assert scan(tmp_path, marks) == ([], [], [3])  # a failed file is not retried while unchanged
    put(a, LINE * 5, age_s=4)  # grew
    put(b, LINE * 2, age_s=3)  # same size, rewritten
    assert scan(tmp_path, marks) == (["a.jsonl", "b.jsonl"], [], [1])


def test_hidden_and_foreign_files_are_ignored(tmp_path: Path) -> None:
    put(tmp_path / ".partial.jsonl", LINE, age_s=10)
    put(tmp_path / ".tmp" / "x.jsonl", LINE, age_s=10)
    put(tmp_path / "notes.md", b"# notes\n", age_s=10)
    put(tmp_path / "upload.jsonl.part", LINE, age_s=10)
    put(tmp_path / "real.ndjson", LINE, age_s=10)
    assert [p.name for p in log_files(tmp_path)] == ["real.ndjson"]


def test_a_missing_folder_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"the watched folder .* does not exist"):
        scan(tmp_path / "gone")
