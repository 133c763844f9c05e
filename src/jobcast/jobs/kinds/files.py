"""`files.checksum`: SHA-256 of files under the files root (JOBCAST_FILES_ROOT).

Real work a user runs: verify a delivery, compare two copies, record what a folder held.
Paths are relative to the root and may not leave it: an absolute path or a `..` is a
400 at submission (field errors per path), and at run time every file's real path
(symlinks followed) must still be inside the root. Folders are walked recursively, in
name order, without following symlinked folders; anything that is not a regular file
(a FIFO, a socket, a device) is skipped, so a job never blocks on a read. Progress is
in bytes, with the file being read as its message; cancellation is noticed between
chunks of 1 MiB.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Annotated

from jobcast.conf import option
from pydantic import AfterValidator, BaseModel, Field

from jobcast.jobs.registry import job

CHUNK = 1 << 20  # bytes read per step: progress and cancel checks at least this often


class ChecksumError(Exception):
    """A path that cannot be checksummed (missing, outside the root, unreadable, too many files)."""


def _relative_path(value: str) -> str:
    """A path under the files root, written relative to it, that cannot climb out of it."""
    if not value or "\x00" in value:
        raise ValueError("must be a non-empty path without NUL characters")
    posix = value.replace("\\", "/")
    if PurePosixPath(posix).is_absolute() or (len(posix) > 1 and posix[1] == ":"):
        raise ValueError("must be relative to the files root (JOBCAST_FILES_ROOT), not absolute")
    if ".." in PurePosixPath(posix).parts:
        raise ValueError("must not contain '..': paths stay inside the files root")
    return PurePosixPath(posix).as_posix()


RelativePath = Annotated[str, AfterValidator(_relative_path)]


class ChecksumParams(BaseModel):
    paths: list[RelativePath] = Field(
        default_factory=lambda: ["."], min_length=1, max_length=100,
        description="Files or folders, relative to the files root ('.' is the whole root); folders are walked.",
    )
    max_files: int = Field(10_000, ge=1, le=100_000, description="Fail instead of checksumming more files than this.")


def files_root() -> Path:
    """The folder files.checksum reads from, resolved (JOBCAST_FILES_ROOT)."""
    return Path(option("FILES_ROOT")).expanduser().resolve()


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _collect(ctx, root: Path, params: ChecksumParams) -> dict[str, tuple[Path, int]]:
    """{relative path: (real path, size)} of every regular file the params name."""
    found: dict[str, tuple[Path, int]] = {}

    def add(real: Path) -> None:
        rel = real.relative_to(root).as_posix()
        if rel not in found:
            if len(found) >= params.max_files:
                raise ChecksumError(f"more than {params.max_files} files (raise max_files, at most 100000)")
            try:
                found[rel] = (real, real.stat().st_size)
            except OSError as exc:
                raise ChecksumError(f"cannot read {rel}: {exc.strerror or type(exc).__name__}") from None

    for given in params.paths:
        real = (root / given).resolve()
        if not _inside(real, root):
            raise ChecksumError(f"{given!r} leads outside the files root (through a symbolic link)")
        if real.is_file():
            add(real)
        elif real.is_dir():
            for folder, subfolders, names in os.walk(real):
                ctx.check_cancelled()
                subfolders.sort()
                for name in sorted(names):
                    path = Path(folder, name).resolve()
                    if not _inside(path, root):
                        ctx.log(f"skipped {Path(folder, name).relative_to(root).as_posix()}: it leads outside the files root")
                    elif path.is_file():
                        add(path)
        elif real.exists():
            raise ChecksumError(f"{given!r} is neither a file nor a folder")
        else:
            raise ChecksumError(f"no file or folder {given!r} under the files root")
    return found


@job("files.checksum", params=ChecksumParams, title="SHA-256 of files")
def checksum(ctx, params: ChecksumParams):
    """SHA-256 of every file the params name; result {relative path: hex digest}, in path order."""
    root = files_root()
    if not root.is_dir():
        raise ChecksumError("the files root does not exist on this worker (set JOBCAST_FILES_ROOT)")
    files = _collect(ctx, root, params)
    total = sum(size for _, size in files.values())
    ctx.progress(0, total=total, message=f"{len(files)} files, {total} bytes")
    done, digests = 0, {}
    for rel in sorted(files):
        path, _ = files[rel]
        ctx.progress(done, total=max(total, done), message=rel)
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as stream:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    done += len(chunk)
                    ctx.progress(done, total=max(total, done), message=rel)
        except OSError as exc:
            raise ChecksumError(f"cannot read {rel}: {exc.strerror or type(exc).__name__}") from None
        digests[rel] = digest.hexdigest()
    ctx.log(f"checksummed {len(digests)} files, {done} bytes")
    return digests
