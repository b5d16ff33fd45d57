"""Read zip and tar archives (and folders) as students' files: every entry with what is wrong
with it, never extracted by a library that would follow its names or keep its modes.

:func:`entries` lists a zip, a tar (plain, gzip, bzip2 or xz) or a folder as :class:`Entry`
objects, in the order they are stored; :func:`name_problem` says what is wrong with an entry's
name (``..``, an absolute path, a drive letter or a backslash, a NUL, control or invisible
formatting character, bytes that are not UTF-8, too deep or too long). Whoever extracts
writes the plain entries with :class:`grading.safefiles.TreeWriter` (files 0644, folders
0755, bounded) and refuses the others. Standard library only.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import stat
import tarfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .safefiles import MAX_DEPTH, describe, open_plain_file, shown, walk_plain

# Names an archive may have, longest first (``work.tar.gz`` is an archive named ``work``).
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".zip", ".tar", ".tgz", ".tbz2", ".txz")
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
_DRIVE = re.compile(r"[A-Za-z]:")


class ArchiveError(Exception):
    """An archive that cannot be read (not a zip or tar, corrupt, too many members, too large)."""


@dataclass
class Entry:
    """One member of an archive (or entry of a folder): its ``name`` as stored (``/``-separated),
    whether it is a folder, and ``problem`` (None when it is a plain file or folder: otherwise a
    link, a device, set-id bits, encryption... in words). ``open()`` reads a plain file's bytes;
    it is valid only until the next entry is read."""

    name: str
    is_dir: bool
    problem: str | None
    open: Callable[[], BinaryIO] | None = None


def archive_stem(name: str) -> str | None:
    """``name`` without its archive suffix (``work.tar.gz`` -> ``work``), or None if it is not an
    archive's name (or nothing is left)."""
    lower = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def name_problem(name: str) -> str | None:
    """What makes the stored entry name ``name`` unsafe to extract or to print, or None."""
    if "\x00" in name:
        return "a NUL character in its name"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        return "its name is not valid UTF-8"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return "a control or invisible formatting character in its name"
    if "\\" in name:
        return "a backslash in its name (a Windows path?)"
    if name.startswith("/"):
        return "an absolute path"
    if _DRIVE.match(name):
        return "a drive letter in its name"
    parts = plain_parts(name)
    if ".." in parts:
        return "a '..' in its name (it would land outside its folder)"
    if not parts:
        return "an empty name"
    if len(parts) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} folders"
    if any(len(p.encode()) > MAX_NAME_BYTES for p in parts) or len(name.encode()) > MAX_PATH_BYTES:
        return "a name too long"
    return None


def plain_parts(name: str) -> list[str]:
    """The parts of the ``/``-separated ``name``, without empty and ``.`` parts (``./a//b/`` -> a, b)."""
    return [p for p in name.split("/") if p not in ("", ".")]


def located_parts(name: str) -> tuple[list[str], bool]:
    """Where the (possibly hostile) entry name ``name`` points, for telling whose it is: its
    plain leading parts, cut at the first ``..`` or absolute start (``/`` or ``\\`` both
    separate), and whether nothing was cut (then the last part is the entry's own name)."""
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return [], False
    kept = []
    for part in re.split(r"[/\\]", name):
        if part in ("", "."):
            continue
        if part == "..":
            return kept, False
        kept.append(part)
    return kept, True


def collision_key(parts: list[str]) -> str:
    """The key under which two paths collide on a case-insensitive or normalizing file system."""
    return "/".join(unicodedata.normalize("NFC", p).casefold() for p in parts)


def _mode_problem(mode: int, link_target: str | None = None) -> str | None:
    """What is wrong with a member stored with the Unix ``mode`` (type and permission bits)."""
    if not stat.S_IFMT(mode):
        mode |= stat.S_IFREG
    if stat.S_ISLNK(mode):
        return f"a link to {shown(link_target)}" if link_target else "a link"
    return describe(_Mode(mode))


class _Mode:
    """Just enough of an ``os.stat_result`` for :func:`describe`."""

    def __init__(self, mode: int):
        self.st_mode = mode
        self.st_nlink = 1


def entries(path: str, max_members: int, max_stream_bytes: int) -> Iterator[Entry]:
    """The entries of the zip or tar archive, or of the folder, at ``path`` (opened without
    following a link), at most ``max_members`` of them; a compressed tar may decompress to
    ``max_stream_bytes`` at most. Raises :class:`ArchiveError` when it cannot be read."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            yield from _folder_entries(path, max_members)
            return
        source, _ = open_plain_file(path)
    except OSError as error:
        raise ArchiveError(error.strerror or str(error)) from error
    with source:
        magic = source.read(6)
        source.seek(0)
        if magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            yield from _zip_entries(source, max_members)
        else:
            yield from _tar_entries(source, magic, max_members, max_stream_bytes)


def _folder_entries(path: str, max_members: int) -> Iterator[Entry]:
    for count, (relative, problem, opener) in enumerate(walk_plain(path), 1):
        if count > max_members:
            raise ArchiveError(f"more than {max_members} entries")
        yield Entry(relative, opener is None and problem is None, problem, opener)


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The member's name as stored (NUL included): UTF-8, whether or not the archive says so."""
    name = info.orig_filename
    if info.flag_bits & 0x800:
        return name
    try:
        return name.encode("cp437").decode("utf-8")
    except UnicodeDecodeError:
        return name.encode("cp437").decode("utf-8", "surrogateescape")


def _zip_entries(source: BinaryIO, max_members: int) -> Iterator[Entry]:
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError, NotImplementedError) as error:
        raise ArchiveError(f"not a readable zip archive ({error})") from error
    with archive:
        members = archive.infolist()
        if len(members) > max_members:
            raise ArchiveError(f"more than {max_members} members ({len(members)})")
        for info in members:
            name = _zip_name(info)
            mode = info.external_attr >> 16
            problem = None
            if info.flag_bits & 0x1:
                problem = "encrypted"
            elif mode and stat.S_ISLNK(mode):
                try:
                    target = archive.open(info).read(MAX_PATH_BYTES).decode("utf-8", "replace")
                except Exception:  # a link whose target cannot be read is refused all the same
                    target = None
                problem = _mode_problem(mode, target)
            elif mode:
                problem = _mode_problem(mode)
            is_dir = name.endswith("/") or bool(mode and stat.S_ISDIR(mode))
            yield Entry(name, is_dir, problem, None if is_dir or problem else (lambda info=info: archive.open(info)))


class _Bounded(io.RawIOBase):
    """A reader of ``source`` that fails once more than ``limit`` bytes were read from it."""

    def __init__(self, source: BinaryIO, limit: int):
        self.source, self.limit, self.count = source, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.source.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise ArchiveError(f"decompresses to more than {self.limit} bytes")
        buffer[: len(data)] = data
        return len(data)


def _tar_entries(source: BinaryIO, magic: bytes, max_members: int, max_stream_bytes: int) -> Iterator[Entry]:
    if magic.startswith(b"\x1f\x8b"):
        stream = gzip.GzipFile(fileobj=source)
    elif magic.startswith(b"BZh"):
        stream = bz2.BZ2File(source)
    elif magic.startswith(b"\xfd7zXZ\x00"):
        stream = lzma.LZMAFile(source)
    else:
        stream = source
    bounded = io.BufferedReader(_Bounded(stream, max_stream_bytes))
    try:
        archive = tarfile.open(fileobj=bounded, mode="r|", encoding="utf-8", errors="surrogateescape")
        count = 0
        for member in archive:
            count += 1
            if count > max_members:
                raise ArchiveError(f"more than {max_members} members")
            yield _tar_entry(archive, member)
    except ArchiveError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as error:
        raise ArchiveError(f"not a readable zip or tar archive ({error})") from error


def _tar_entry(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Entry:
    bits = member.mode & 0o7777
    if member.issym():
        problem = f"a link to {shown(member.linkname)}"
    elif member.islnk():
        problem = f"a hard link to {shown(member.linkname)}"
    elif member.ischr() or member.isblk() or member.isfifo():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        problem = _mode_problem(kind | bits)
    elif member.isdir():
        problem = _mode_problem(stat.S_IFDIR | bits)
    elif member.isreg():
        problem = _mode_problem(stat.S_IFREG | bits)
    else:
        problem = f"not a file or a folder (tar type {member.type!r})"
    is_dir = member.isdir()
    opener = None if is_dir or problem else (lambda: archive.extractfile(member))
    return Entry(member.name + ("/" if is_dir else ""), is_dir, problem, opener)
