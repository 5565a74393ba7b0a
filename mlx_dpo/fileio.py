"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Write to a temporary file in the same folder, fsync it, then rename over the target; rename is atomic
on POSIX file systems (APFS included).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

def disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))


def write_failure(e: OSError) -> str:
    """Why a write failed, in words for an error message: the disk is full, or the system's reason."""
    return "the disk is full" if disk_full(e) else (e.strerror or str(e))


# MLX's writers (mx.save_safetensors, mx.save) report a failed write() as this RuntimeError, errno dropped.
_MLX_WRITE_FAILED = re.compile(r"\[write\] Unable to write (\d+) bytes")


def mlx_write_failure(e: BaseException, path: str | Path) -> OSError | None:
    """MLX's failed write of `path` as the OSError it stands for; None if `e` is something else.

    MLX gives no reason, so ask the file system: a disk without room for the bytes MLX could not write
    is full (the partial file is still there, so the space it took is not free yet). Otherwise (a disk
    unplugged, a quota) the error says the write failed, without claiming the disk is full.
    """
    m = _MLX_WRITE_FAILED.search(str(e)) if isinstance(e, RuntimeError) else None
    if m is None:
        return None
    folder = Path(path)
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < max(int(m.group(1)), 1 << 20):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    where = f"; {free / 1e9:.1f} GB are free there" if free is not None else ""
    return OSError(errno.EIO, f"the write failed (MLX gives no reason{where})", str(path))


@contextmanager
def mlx_writes(path: str | Path):
    """Raise MLX's failed write of `path` as an OSError, which every writer here already handles."""
    try:
        yield
    except RuntimeError as e:
        err = mlx_write_failure(e, path)
        if err is None:
            raise
        raise err from None


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`. A short write (a disk with room for part of it) is continued, so the
    next write raises the reason (ENOSPC). For appends under a lock: no other writer's bytes interleave."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def fsync_dir(path: str | Path) -> None:
    """Make a rename in `path` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` and move the result to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix last: some writers (mx.save_safetensors) append theirs otherwise.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with mlx_writes(path):
            write(tmp_path)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def append_line(path: str | Path, row: dict) -> None:
    """One write of one JSON line, then fsync: a kill leaves the line whole or torn (a reader cuts a torn last
    line off, see read_jsonl_tolerant); a failed write (a full disk) is cut off at once, so a later append
    cannot continue a torn line."""
    data = (json.dumps(row) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            write_all(fd, data)
            os.fsync(fd)
        except OSError as e:
            os.ftruncate(fd, size)
            raise OSError(e.errno, e.strerror, str(path)) from None  # the CLI names the file
    finally:
        os.close(fd)


def read_jsonl_tolerant(path: str | Path) -> list[dict]:
    """Read a JSONL log, skipping a torn last line left by a killed writer (even one cut mid-character)."""
    rows = []
    try:
        raw = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return rows
    for line in raw.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def cache_root(cache_dir: str | None = None) -> Path:
    """Where the reference log-probs and tokenized data are cached: --cache-dir, $MLX_DPO_CACHE, or
    $XDG_CACHE_HOME/mlx-dpo (~/.cache/mlx-dpo)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MLX_DPO_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlx-dpo"
