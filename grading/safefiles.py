"""Students' files, handled without trusting them: find what is not a plain file or folder, and
copy or write a tree without ever following a link.

A submission is "plain" when every entry is a regular file with a single name (no hard link) or
a directory, neither with the setuid, setgid or sticky bit. Anything else (a symbolic link, a
hard-linked file, a device, a FIFO, a socket, a set-id file) is what lets a submission read
the solutions, the gradebook or another student's work when it is copied, block the grader on
a FIFO, or leave a setuid-root program in the course. :func:`special_files` lists them;
:func:`copy_tree_safely` copies a tree while refusing them; :class:`TreeWriter` writes files
and folders below a root with fixed modes (files 0644, folders 0755, whoever runs it and
whatever the umask), through directory file descriptors opened with ``O_NOFOLLOW``, so that
a link swapped in during the copy is never followed either.

Standard library only: it is imported in grading workers.
"""

from __future__ import annotations

import errno
import fnmatch
import itertools
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

FILE_MODE = 0o644
FOLDER_MODE = 0o755
CHUNK = 1 << 20
MAX_DEPTH = 32
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO never blocks the open
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Limits:
    """Bounds on what one copy or extraction may write: bytes of one file, bytes in all, files."""

    max_file_bytes: int = 100 * 2**20
    max_total_bytes: int = 500 * 2**20
    max_files: int = 1000


class Refusal(NamedTuple):
    """An entry that was not copied: its path (relative, ``/``-separated) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{shown(self.path)}: {self.reason}"


class LimitExceeded(OSError):
    """A file or a tree is larger than its :class:`Limits` allow."""


def shown(name: str) -> str:
    """``name`` safe to print on one line: as it is when printable, else Python's escaped form
    (control characters, terminal escapes and undecodable bytes appear as ``\\x1b``, ``\\udcff``)."""
    return name if name.isprintable() else repr(name)[1:-1]


def _kind(mode: int) -> str:
    for test, words in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDOOR, "a door"),
        (stat.S_ISPORT, "an event port"),
        (stat.S_ISWHT, "a whiteout"),
    ):
        if test(mode):
            return words
    return f"a special file (type {stat.S_IFMT(mode):o})"


def describe(info: os.stat_result, link_target: str | None = None) -> str | None:
    """What makes the entry whose ``lstat`` is ``info`` not plain, in words (``"a link to
    /etc/passwd"``, ``"a character device"``, ``"setuid, mode 4755"``...); None for a plain regular file
    or directory."""
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return f"a link to {shown(link_target)}" if link_target is not None else "a link"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return _kind(mode)
    bits = [
        name
        for bit, name in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"), (stat.S_ISVTX, "sticky"))
        if mode & bit
    ]
    if bits:
        return " and ".join(bits) + f", mode {stat.S_IMODE(mode):04o}"
    if stat.S_ISREG(mode) and info.st_nlink > 1:
        return f"a hard link, one of {info.st_nlink} names of a file"
    return None


def _describe_at(name: str, dir_fd: int | None) -> tuple[os.stat_result, str | None]:
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    target = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(info.st_mode) else None
    return info, describe(info, target)


def special_files(directory: str, up_to: str | None = None) -> list[str]:
    """Every entry under ``directory`` that is not plain (see :func:`describe`), the directory
    itself included and, with ``up_to``, each of its parents below ``up_to``; as
    ``"RELATIVE/PATH (what it is)"``, paths relative to ``directory`` (a parent as ``..``, ``../..``).
    Links are never followed; an entry that cannot be read is listed too (it cannot be checked)."""
    found = []
    directory = os.path.abspath(directory)
    if up_to is not None:
        top, parent, relative = os.path.abspath(up_to), os.path.dirname(directory), ".."
        while parent.startswith(top + os.sep):
            try:
                problem = _describe_at(parent, None)[1]
            except OSError as error:
                problem = f"cannot be read ({error.strerror})"
            if problem:
                found.append(f"{relative} ({problem})")
            parent, relative = os.path.dirname(parent), relative + "/.."
    try:
        found += [f"{shown(relative)} ({problem})" for relative, problem, _ in walk_plain(directory) if problem]
    except OSError as error:
        found.append(f". ({error.strerror or error})")
    return found


def _open_same_dir(name: str, dir_fd: int, info: os.stat_result) -> int:
    """Open the directory ``name`` (never through a link) and check it is the one ``info`` describes."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
        os.close(fd)
        raise OSError(errno.ESTALE, "it changed while it was read", name)
    return fd


def open_plain_file(name: str, dir_fd: int | None = None) -> tuple[BinaryIO, os.stat_result]:
    """Open ``name`` for reading if it is a plain regular file (see :func:`describe`): never
    through a link, never a FIFO or a device, and checked after opening (``fstat``) to be what
    was checked before; raises ``OSError`` saying what it is otherwise."""
    info, problem = _describe_at(name, dir_fd)
    if problem or not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EPERM, problem or "a folder", name)
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    opened = os.fstat(fd)
    if (
        (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino)
        or describe(opened)
        or not stat.S_ISREG(opened.st_mode)
    ):
        os.close(fd)
        raise OSError(errno.ESTALE, "it changed while it was read", name)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), opened


def make_folders(path: str) -> None:
    """``os.makedirs(path)``, each folder it creates 0755 whatever the umask."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        os.mkdir(folder)
        os.chmod(folder, FOLDER_MODE)


class TreeWriter:
    """Writes folders (0755) and files (0644) below the folder ``root``, bounded by ``limits``.

    Every path is relative to ``root`` and reached through directory file descriptors opened
    with ``O_NOFOLLOW``; files are created with ``O_EXCL | O_NOFOLLOW``, never overwritten,
    and their modes set with ``fchmod`` (the umask cannot widen or narrow them). Paths with
    ``..``, empty or absolute parts are refused (``ValueError``). ``written_bytes`` and
    ``written_files`` count what was written."""

    def __init__(self, root: str, limits: Limits = Limits()):
        self.root = os.path.abspath(root)
        self.limits = limits
        self.written_bytes = 0
        self.written_files = 0
        self._root_fd = os.open(self.root, _DIR_FLAGS)

    def close(self) -> None:
        os.close(self._root_fd)

    def __enter__(self) -> TreeWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _parts(relative: str) -> list[str]:
        parts = relative.split("/")
        if relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a plain relative path: {shown(relative)}")
        return parts

    def _folder_fd(self, parts: list[str]) -> int:
        """A descriptor of the folder ``parts`` below the root, created (0755) where missing."""
        fd = os.dup(self._root_fd)
        try:
            for part in parts:
                try:
                    os.mkdir(part, FOLDER_MODE, dir_fd=fd)
                    created = True
                except FileExistsError:
                    created = False
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
                if created:
                    os.fchmod(fd, FOLDER_MODE)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def mkdir(self, relative: str) -> None:
        """Create the folder ``relative`` (and its parents) if missing."""
        os.close(self._folder_fd(self._parts(relative)))

    def write(self, relative: str, source: BinaryIO) -> int:
        """Create the file ``relative`` with what ``source`` reads; the bytes written. Raises
        ``LimitExceeded`` (the partial file removed) beyond one file's or the tree's limits,
        ``FileExistsError`` if it exists."""
        parts = self._parts(relative)
        if self.written_files >= self.limits.max_files:
            raise LimitExceeded(errno.EFBIG, f"more than {self.limits.max_files} files")
        parent = self._folder_fd(parts[:-1])
        try:
            fd = os.open(parts[-1], _WRITE_FLAGS, FILE_MODE, dir_fd=parent)
            size = 0
            try:
                os.fchmod(fd, FILE_MODE)
                allowance = min(self.limits.max_file_bytes, self.limits.max_total_bytes - self.written_bytes)
                while chunk := source.read(min(CHUNK, allowance - size + 1)):
                    size += len(chunk)
                    if size > allowance:
                        too_big = size > self.limits.max_file_bytes
                        raise LimitExceeded(
                            errno.EFBIG,
                            f"larger than {self.limits.max_file_bytes} bytes"
                            if too_big
                            else f"more than {self.limits.max_total_bytes} bytes in all",
                        )
                    os.write(fd, chunk)
            except BaseException:
                os.close(fd)
                os.unlink(parts[-1], dir_fd=parent)
                raise
            os.close(fd)
        finally:
            os.close(parent)
        self.written_bytes += size
        self.written_files += 1
        return size


def allow_patterns(patterns: Iterable[str]) -> Callable[[str], bool]:
    """A test of relative paths: True when the path or its last part matches one of the glob
    ``patterns`` (``fnmatch``, case-sensitive)."""
    patterns = list(patterns)

    def allowed(relative: str) -> bool:
        name = relative.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(relative, p) or fnmatch.fnmatchcase(name, p) for p in patterns)

    return allowed


def walk_plain(directory: str) -> Iterator[tuple[str, str | None, Callable[[], BinaryIO] | None]]:
    """Each entry below ``directory`` (not itself), parents first, in sorted order, as
    ``(relative path, problem, opener)``: ``problem`` is None for a plain file or folder (see
    :func:`describe`) and ``opener`` opens a plain file (checked again when it is opened, see
    :func:`open_plain_file`; valid until the next entry is asked for), None for a folder or a
    refused entry. Links are never followed and nothing below a refused folder is listed.
    Raises ``OSError`` if ``directory`` itself is not a plain folder (or cannot be read)."""
    info, problem = _describe_at(directory, None)
    if problem or not stat.S_ISDIR(info.st_mode):
        raise OSError(errno.EPERM, problem or "not a folder", directory)
    root = _open_same_dir(directory, None, info)

    def visit(fd: int, prefix: str, depth: int):
        try:
            names = sorted(os.listdir(fd))
        except OSError as error:
            yield prefix.rstrip("/") or ".", f"cannot be read ({error.strerror})", None
            return
        for name in names:
            relative = prefix + name
            try:
                info, problem = _describe_at(name, fd)
            except OSError as error:
                yield relative, f"cannot be read ({error.strerror})", None
                continue
            if problem:
                yield relative, problem, None
            elif stat.S_ISDIR(info.st_mode):
                if depth >= MAX_DEPTH:
                    yield relative, f"folders nested deeper than {MAX_DEPTH}", None
                    continue
                try:
                    child = _open_same_dir(name, fd, info)
                except OSError as error:
                    yield relative, f"cannot be read ({error.strerror})", None
                    continue
                try:
                    yield relative, None, None
                    yield from visit(child, relative + "/", depth + 1)
                finally:
                    os.close(child)
            else:
                yield relative, None, lambda fd=fd, name=name: open_plain_file(name, fd)[0]

    try:
        yield from visit(root, "", 1)
    finally:
        os.close(root)


def copy_tree_safely(
    src: str,
    dst: str,
    allowed: Callable[[str], bool] | Iterable[str] | None = None,
    limits: Limits = Limits(),
) -> tuple[list[str], list[Refusal]]:
    """Copy the folder ``src`` to ``dst`` (which must not exist; its missing parents are created
    0755): only plain regular files and folders (see :func:`describe`), never following a link at
    any depth, files 0644 and folders 0755 (no mode bits, owner or times kept), files that
    ``allowed`` accepts (a test of the ``/``-separated relative path, or glob patterns, see
    :func:`allow_patterns`; None: every file), within ``limits``; a folder is made only when a
    file is copied into it. Returns the relative paths copied and the :class:`Refusal` of
    everything else (a refused folder is not entered)."""
    if allowed is None:
        accept = lambda relative: True  # noqa: E731
    elif callable(allowed):
        accept = allowed
    else:
        accept = allow_patterns(allowed)
    copied: list[str] = []
    refused: list[Refusal] = []
    entries = walk_plain(src)
    try:
        first = next(entries, None)
    except OSError as error:
        return copied, [Refusal(".", error.strerror or str(error))]
    make_folders(os.path.dirname(os.path.abspath(dst)))
    os.mkdir(dst, FOLDER_MODE)
    os.chmod(dst, FOLDER_MODE)
    with TreeWriter(dst, limits) as writer:
        for relative, problem, opener in itertools.chain([first] if first else [], entries):
            if problem:
                refused.append(Refusal(relative, problem))
            elif opener is None:
                continue  # a folder: made when a file is copied into it
            elif not accept(relative):
                refused.append(Refusal(relative, "not an allowed file"))
            else:
                try:
                    with opener() as source:
                        writer.write(relative, source)
                    copied.append(relative)
                except OSError as error:
                    refused.append(Refusal(relative, error.strerror or str(error)))
    return copied, refused
