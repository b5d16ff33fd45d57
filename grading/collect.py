"""Collect a downloaded batch of submissions into ``submitted/``, trusting nothing in it.

A batch is what an LMS download or an instructor hands over: zip or tar archives, folders,
files, with students' own archives inside. It is unpacked into a staging folder
(``downloaded/ASSIGNMENT/extracted/``) with :mod:`grading.archives` and
:class:`grading.safefiles.TreeWriter`: only plain files and folders are written (files 0644,
folders 0755, whoever runs it), never a link, a device or a set-id bit; a member with a
hostile name (``..``, an absolute path, a drive letter or backslash, a control character,
bytes that are not UTF-8), a duplicate or case-colliding name, a folder named like a
notebook, or more bytes or members than the limits allow is refused. Then each file is
given to its student (layouts below); a student any of whose entries was refused is
refused whole (nothing of theirs is collected, the others are), and only the released
notebooks and the files the instructor allows (``SubmissionCollector.allowed_files``,
default ``timestamp.txt``) are copied into ``submitted/STUDENT/ASSIGNMENT/``. Every file
refused or skipped gets one line saying why.

Layouts (the first that applies to a file's path in the batch):

- ``c.FileNameCollectorPlugin.named_regexp`` set: nbgrader's regular expression on the path;
- Moodle: a folder ``Full Name_12345_assignsubmission_file_/`` ("download submissions in
  folders") or a file ``Full Name_12345_assignsubmission_file_NB.ipynb``: the student is the
  participant number, ``12345``, the identifier of Moodle's grading worksheet;
- a folder per student: the outermost folder below the batch's top that holds a released
  notebook or an archive (``alice/NB.ipynb``, ``download/alice/NB.ipynb``,
  ``alice/work.zip``, ``alice.zip``); its ``timestamp.txt`` is the submission time, unless it
  comes from inside an archive in the batch (a student's own archive could forge it);
- a released notebook at the top of an archive or folder given alone: that archive's or
  folder's name is the student (``alice.zip`` holding ``NB.ipynb``);
- flat files ``alice_NB.ipynb``.

The same code serves ``python -m grading collect`` (:meth:`grading.workflow.Course.collect`)
and stock ``nbgrader zip_collect`` (:class:`SafeExtractor`, set by :mod:`grading.config`).
"""

from __future__ import annotations

import glob
import io
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field

from nbgrader.coursedir import CourseDirectory
from nbgrader.plugins import ExtractorPlugin, FileNameCollectorPlugin
from nbgrader.utils import parse_utc
from traitlets import Integer, List, Unicode

from .archives import (
    ArchiveError,
    archive_stem,
    collision_key,
    entries,
    located_parts,
    name_problem,
    plain_parts,
)
from .safefiles import (
    FOLDER_MODE,
    Limits,
    TreeWriter,
    allow_patterns,
    describe,
    make_folders,
    open_plain_file,
    shown,
)

STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")
MOODLE_FOLDER = re.compile(r"(?P<name>.*)_(?P<id>\d+)_assignsubmission_(?P<plugin>[a-z]+)_")
MOODLE_FILE = re.compile(r"(?P<name>.*)_(?P<id>\d+)_assignsubmission_file_(?P<file>.+)")
TIMESTAMP = "timestamp.txt"
MAX_TIMESTAMP_BYTES = 200
Folder = tuple[str, ...]
# What reading one member of an archive can raise when the member is broken or hostile.
UNREADABLE = (
    OSError,
    ArchiveError,
    EOFError,
    RuntimeError,
    ValueError,
    NotImplementedError,
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
)


@dataclass
class Found:
    """An entry of the batch, placed in the staging tree: its ``folder`` there, its own ``name``
    (None when a hostile name was cut short, as in ``alice/../../x``), where it came from
    (``shown``, e.g. ``batch.zip!alice/work.zip!NB.ipynb``) and, if it was refused, why."""

    folder: Folder
    name: str | None
    shown: str
    reason: str | None = None

    @property
    def path(self) -> str:
        return "/".join((*self.folder, self.name or ""))


@dataclass
class Unpacked:
    """What unpacking a batch gave: the ``files`` written to the staging tree and the entries
    ``refused``; the folders of the batch's sources (``roots``) and of the archives found in
    them (``archive_folders``); every name seen in each folder, refused ones included."""

    files: list[Found] = field(default_factory=list)
    refused: list[Found] = field(default_factory=list)
    roots: set[Folder] = field(default_factory=set)
    archive_folders: set[Folder] = field(default_factory=set)
    names: dict[Folder, set[str]] = field(default_factory=dict)

    def add_name(self, folder: Folder, name: str) -> None:
        self.names.setdefault(folder, set()).add(name)


@dataclass
class Identity:
    """Whose a file is: the ``student``, the file's name in the submission (``file_id``), the
    student's folder in the batch (folder and Moodle layouts) and the layout that told."""

    student: str
    file_id: str | None
    folder: Folder | None
    layout: str
    timestamp: str | None = None


@dataclass
class CollectResult:
    """Students collected (with the files written for each), students refused (with why), and
    one line per refused or skipped file and per refused student."""

    collected: dict[str, list[str]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    refused_files: int = 0

    @property
    def ok(self) -> bool:
        return not self.refused and not self.refused_files


class SafeExtractor(ExtractorPlugin):
    """nbgrader ``zip_collect``'s extractor, collecting the whole batch safely (module docstring).

    nbgrader's own extraction would write archive members' links and modes, and its collection
    copies links' targets and fails the whole batch on one bad file; this plugin, the only hook
    nbgrader calls before anything is copied, unpacks, attributes and copies every student's
    files itself, then turns nbgrader's collection pass off for the run (it has nothing left to
    do) and fails the command (exit status 1) if anything was refused."""

    max_members = Integer(10000, help="Members read from one archive (or entries of one folder), at most").tag(
        config=True
    )
    max_files = Integer(100000, help="Files written for a whole batch, at most").tag(config=True)
    max_total_size = Integer(2 * 2**30, help="Bytes written for a whole batch, at most").tag(config=True)
    max_depth = Integer(3, help="Archives inside archives opened, at most this deep (the batch's own is 1)").tag(
        config=True
    )

    def limits(self, coursedir: CourseDirectory) -> Limits:
        """Bounds of an unpacking: a file as large as nbgrader's ``CourseDirectory.max_file_size``
        (kilobytes), and this plugin's totals."""
        return Limits(1000 * coursedir.max_file_size, self.max_total_size, self.max_files)

    def extract(self, archive_path: str, extracted_path: str) -> None:
        app = self.parent
        collector = app.collector_plugin_inst
        if not isinstance(collector, SubmissionCollector):
            collector = SubmissionCollector(parent=app)
        sources = [os.path.join(archive_path, name) for name in sorted(os.listdir(archive_path))]
        os.chmod(extracted_path, FOLDER_MODE)  # nbgrader has just made it, with the umask's mode
        try:
            result = collect_batch(
                app.coursedir,
                app.coursedir.assignment_id,
                sources,
                extracted_path,
                self,
                collector,
                self.force,
                self.log,
            )
        except CollectError as error:
            app.fail(str(error))
        for line in result.lines:
            (self.log.warning if line.startswith("skipped") else self.log.error)(line)
        app.process_extracted_files = lambda: None  # everything was collected above
        if not result.ok:
            app.fail(summary(result))
        app.log.info(summary(result))


class CollectError(RuntimeError):
    """Nothing can be collected (the assignment is not released)."""


class SubmissionCollector(FileNameCollectorPlugin):
    """Says whose each file of a batch is, and which files are taken (layouts: module docstring)."""

    allowed_files = List(
        Unicode(),
        [TIMESTAMP],
        help="Glob patterns of files taken besides the released notebooks (always taken); "
        "timestamp.txt is read as the submission time",
    ).tag(config=True)

    def identify(self, found: Found, batch: Unpacked, released: list[str], staging: str) -> Identity | None:
        """Whose ``found`` is, and under what name, in the ``batch`` unpacked into ``staging``."""
        if self.named_regexp:
            match = re.match(self.named_regexp, os.path.join(staging, *found.folder, found.name or ""))
            if not match or "student_id" not in match.groupdict() or "file_id" not in match.groupdict():
                return None
            groups = match.groupdict()
            file_id = groups["file_id"]
            if found.name and file_id is not None:
                file_id = os.path.splitext(file_id)[0] + os.path.splitext(found.name)[1]
            return Identity(groups["student_id"] or "", file_id, None, "regexp", groups.get("timestamp"))
        for depth in range(len(found.folder), 0, -1):
            moodle = MOODLE_FOLDER.fullmatch(found.folder[depth - 1])
            if moodle:
                return Identity(moodle["id"], found.name, found.folder[:depth], "Moodle")
        if found.name and (moodle := MOODLE_FILE.fullmatch(found.name)):
            return Identity(moodle["id"], moodle["file"], None, "Moodle")
        start = 1 if found.folder[:1] in batch.roots else 0
        for depth in range(start + 1, len(found.folder) + 1):
            folder = found.folder[:depth]
            names = batch.names.get(folder, set())
            if folder in batch.archive_folders or any(
                name in released or (*folder, name) in batch.archive_folders for name in names
            ):
                return Identity(folder[-1], found.name, folder, "folder")
        if found.name in released and len(found.folder) == start == 1:
            return Identity(found.folder[0], found.name, found.folder, "folder")
        for notebook in released:
            if found.name and found.name.endswith("_" + notebook) and len(found.name) > len(notebook) + 1:
                return Identity(found.name[: -len(notebook) - 1], notebook, None, "flat")
        return None


def released_notebooks(coursedir: CourseDirectory, assignment: str) -> list[str]:
    release = coursedir.format_path(coursedir.release_directory, ".", assignment)
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(release, "*.ipynb")))


class _Unpacker:
    """Unpacks a batch's sources into a staging folder (see :func:`unpack`)."""

    def __init__(self, staging: str, limits: Limits, max_members: int, max_depth: int):
        self.staging, self.limits, self.max_members, self.max_depth = staging, limits, max_members, max_depth
        self.batch = Unpacked()
        self.writer = TreeWriter(staging, limits)

    def refuse(self, folder: Folder, stored: str, shown_as: str, reason: str) -> None:
        parts, complete = located_parts(stored)
        if complete and parts:
            self.batch.add_name((*folder, *parts[:-1]), parts[-1])
            found = Found((*folder, *parts[:-1]), parts[-1], shown_as, reason)
        else:
            found = Found((*folder, *parts), None, shown_as, reason)
        self.batch.refused.append(found)

    def source(self, path: str) -> None:
        name = os.path.basename(path.rstrip("/"))
        try:
            info = os.lstat(path)
        except OSError as error:
            return self.refuse((), name, shown(name), f"cannot be read ({error.strerror})")
        problem = describe(info, os.readlink(path) if stat.S_ISLNK(info.st_mode) else None)
        stem = None if stat.S_ISDIR(info.st_mode) else archive_stem(name)
        if problem:
            return self.refuse((), name, shown(name), problem)
        if not stat.S_ISDIR(info.st_mode) and stem is None:
            return self.plain_file((), name, shown(name), lambda: open_plain_file(path)[0])
        own = name if stem is None else stem
        if collision_key([own]) in {collision_key([n]) for n in self.batch.names.get((), ())}:
            return self.refuse((), name, shown(name), f"its folder name {shown(own)!r} is taken by another source")
        self.batch.add_name((), own)
        self.batch.roots.add((own,))
        self.writer.mkdir(own)
        self.members(path, (own,), shown(name) + ("/" if stem is None else "!"), 0 if stem is None else 1)

    def plain_file(self, folder: Folder, name: str, shown_as: str, opener) -> bool:
        try:
            with opener() as source:
                self.writer.write("/".join((*folder, name)), source)
        except UNREADABLE as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            self.batch.refused.append(Found(folder, name, shown_as, f"not extracted: {reason}"))
            return False
        self.batch.files.append(Found(folder, name, shown_as))
        return True

    def members(self, path: str, folder: Folder, prefix: str, depth: int) -> None:
        """Unpack the archive or folder at ``path`` into ``folder`` of the staging tree; archives
        inside it are unpacked next to themselves (``work.zip`` into ``work/``), ``depth`` being its own."""
        keys: dict[str, str] = {}
        folder_keys: set[str] = set()
        file_keys: set[str] = set()
        archives = []
        try:
            for entry in entries(path, self.max_members, 2 * self.limits.max_total_bytes):
                shown_as = prefix + shown(entry.name)
                problem = name_problem(entry.name) or entry.problem
                parts = plain_parts(entry.name)
                key = collision_key(parts) if parts else ""
                ancestors = [collision_key(parts[:i]) for i in range(1, len(parts))]
                if problem:
                    pass
                elif key in keys:
                    problem = f"a second member named like {shown(keys[key])!r}"
                elif (key in folder_keys) != entry.is_dir and (key in folder_keys or key in file_keys):
                    problem = "a file and a folder of the same name"
                elif any(a in file_keys for a in ancestors):
                    problem = "inside a member that is a file"
                elif entry.is_dir and parts[-1].lower().endswith(".ipynb"):
                    problem = "a folder named like a notebook"
                if problem:
                    self.refuse(folder, entry.name, shown_as, problem)
                    continue
                keys[key] = entry.name
                folder_keys.update(ancestors)
                for i in range(len(parts)):
                    self.batch.add_name((*folder, *parts[:i]), parts[i])
                if entry.is_dir:
                    folder_keys.add(key)
                    self.writer.mkdir("/".join((*folder, *parts)))
                    continue
                file_keys.add(key)
                stem = archive_stem(parts[-1])
                if stem is not None and depth >= self.max_depth:
                    self.refuse(folder, entry.name, shown_as, f"an archive inside {depth} archives")
                elif self.plain_file((*folder, *parts[:-1]), parts[-1], shown_as, entry.open) and stem is not None:
                    self.batch.files.pop()  # an archive is unpacked, not collected
                    archives.append((parts, stem, shown_as))
        except ArchiveError as error:
            self.batch.refused.append(Found(folder, None, prefix.rstrip("!/"), f"{error}; the rest of it was not read"))
        for parts, stem, shown_as in archives:
            parent = (*folder, *parts[:-1])
            own = (*parent, stem)
            taken = {collision_key([n]) for n in self.batch.names.get(parent, ()) if n != parts[-1]}
            if collision_key([stem]) in taken:
                self.refuse(parent, parts[-1], shown_as, f"its folder name {shown(stem)!r} is taken")
                continue
            self.batch.add_name(parent, stem)
            self.batch.archive_folders.add(own)
            self.writer.mkdir("/".join(own))
            self.members(os.path.join(self.staging, *folder, *parts), own, shown_as + "!", depth + 1)


def unpack(sources: list[str], staging: str, limits: Limits, max_members: int, max_depth: int) -> Unpacked:
    """Unpack each of ``sources`` (archives, folders, files) into the folder ``staging``: plain
    files and folders only, within ``limits``; ``max_members`` per archive, archives opened
    ``max_depth`` deep. A source's folder there is named after it (``batch.zip`` -> ``batch/``)."""
    unpacker = _Unpacker(staging, limits, max_members, max_depth)
    try:
        for source in sources:
            unpacker.source(source)
    finally:
        unpacker.writer.close()
    return unpacker.batch


def _read_timestamp(path: str) -> str:
    """The text of a timestamp.txt (bounded: a date is short)."""
    with open_plain_file(path)[0] as f:
        text = f.read(MAX_TIMESTAMP_BYTES + 1)
    if len(text) > MAX_TIMESTAMP_BYTES:
        raise ValueError("longer than a date")
    return text.decode("utf-8").strip()


@dataclass
class _Submission:
    """One student's files by name in the submission (each with its source and, from
    ``named_regexp``, its timestamp), timestamp files, submission time, and what refuses it."""

    files: dict[str, list[tuple[Found, str | None]]] = field(default_factory=dict)
    timestamps: list[Found] = field(default_factory=list)
    timestamp: str | None = None
    problems: list[str] = field(default_factory=list)


def _settle(submission: _Submission, released: list[str], staging: str) -> None:
    """Choose among duplicates (with ``named_regexp`` timestamps, the newest, as nbgrader does;
    otherwise the student is refused), read the submission time, and refuse a submission
    without any released notebook."""
    stamps = []
    for file_id, copies in submission.files.items():
        try:
            dated = [(parse_utc(stamp), found) for found, stamp in copies if stamp]
        except (ValueError, OverflowError) as error:
            submission.problems.append(f"{copies[0][0].shown}: its timestamp is not a date ({error})")
            continue
        stamps += [stamp for stamp, _ in dated]
        if len(copies) > 1 and len(dated) == len(copies) and len({stamp for stamp, _ in dated}) == len(dated):
            submission.files[file_id] = [(max(dated, key=lambda pair: pair[0])[1], None)]
        elif len(copies) > 1:
            sources = ", ".join(found.shown for found, _ in copies)
            submission.problems.append(f"{len(copies)} files named {file_id}: {sources}")
    if len(submission.timestamps) > 1:
        submission.problems.append(f"{len(submission.timestamps)} timestamp.txt files")
    elif submission.timestamps:
        try:
            stamps.append(parse_utc(_read_timestamp(os.path.join(staging, submission.timestamps[0].path))))
        except (OSError, ValueError, OverflowError, UnicodeDecodeError) as error:
            submission.problems.append(f"{submission.timestamps[0].shown}: not a date ({error})")
    if stamps and not submission.problems:
        submission.timestamp = max(stamps).isoformat(" ")
    if not any(file_id in released for file_id in submission.files) and not submission.problems:
        submission.problems.append(f"no released notebook ({', '.join(released)}) among its files")


def plan(
    batch: Unpacked, collector: SubmissionCollector, released: list[str], staging: str, result: CollectResult
) -> dict[str, _Submission]:
    """Each student's files in the unpacked ``batch`` (and what refuses a student); the lines of
    refused and skipped files go to ``result``."""
    allowed = allow_patterns(collector.allowed_files)
    submissions: dict[str, _Submission] = {}

    def student(found: Found) -> Identity | None:
        identity = collector.identify(found, batch, released, staging)
        if identity and not STUDENT_ID.fullmatch(identity.student):
            result.lines.append(f"skipped {found.shown}: {shown(identity.student)!r} is not a valid student id")
            return None
        return identity

    for found in batch.refused:
        identity = student(found)
        result.refused_files += 1
        result.lines.append(f"refused {found.shown}: {found.reason}")
        if identity:
            submissions.setdefault(identity.student, _Submission()).problems.append(f"{found.shown}: {found.reason}")
    for found in batch.files:
        identity = student(found)
        if identity is None:
            result.lines.append(f"skipped {found.shown}: no student id found in its path or name")
            continue
        submission = submissions.setdefault(identity.student, _Submission())
        file_id = identity.file_id
        if file_id is None or name_problem(file_id) or "/" in file_id and identity.layout != "regexp":
            result.lines.append(f"skipped {found.shown}: no valid file name found in it")
        elif file_id == TIMESTAMP and allowed(TIMESTAMP) and identity.layout != "regexp":
            inside_archive = any(identity.folder[:i] in batch.archive_folders for i in range(len(identity.folder) + 1))
            if identity.layout == "folder" and found.folder == identity.folder and not inside_archive:
                submission.timestamps.append(found)
            else:
                result.lines.append(
                    f"skipped {found.shown}: a timestamp.txt from inside a student's upload is not trusted"
                )
        elif file_id in released or allowed(file_id):
            submission.files.setdefault(file_id, []).append((found, identity.timestamp))
        else:
            others = ", ".join(collector.allowed_files) or "nothing else"
            result.lines.append(
                f"skipped {found.shown}: not an allowed file (allowed: the released notebooks, {others})"
            )
    for submission in submissions.values():
        _settle(submission, released, staging)
    return submissions


def _plain_folder(path: str) -> bool:
    """Whether ``path`` is missing or a plain folder (not a link or anything else)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return True
    return stat.S_ISDIR(info.st_mode) and describe(info) is None


def write_submission(
    coursedir: CourseDirectory,
    assignment: str,
    student: str,
    submission: _Submission,
    staging: str,
    limits: Limits,
    force: bool,
) -> list[str]:
    """Copy ``student``'s files from ``staging`` into ``submitted/STUDENT/ASSIGNMENT/`` (replacing
    an earlier collect with ``force``); the names written. Raises ``OSError`` if it cannot."""
    dest = coursedir.format_path(coursedir.submitted_directory, student, assignment)
    for folder in (os.path.dirname(os.path.dirname(dest)), os.path.dirname(dest), dest):
        if not _plain_folder(folder):
            raise OSError(f"{folder} is not a plain folder (a link?)")
    if os.path.lexists(dest):
        if not force:
            raise OSError("already collected (pass --force to replace it)")
        shutil.rmtree(dest)
    make_folders(os.path.dirname(dest))
    os.mkdir(dest, FOLDER_MODE)
    os.chmod(dest, FOLDER_MODE)
    written = []
    try:
        with TreeWriter(dest, limits) as writer:
            for file_id, [(found, _)] in sorted(submission.files.items()):
                with open_plain_file(os.path.join(staging, found.path))[0] as source:
                    writer.write(file_id, source)
                written.append(file_id)
            if submission.timestamp:
                writer.write(TIMESTAMP, io.BytesIO(submission.timestamp.encode()))
                written.append(TIMESTAMP)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return written


def collect_batch(
    coursedir: CourseDirectory,
    assignment: str,
    sources: list[str],
    staging: str,
    extractor: SafeExtractor,
    collector: SubmissionCollector,
    force: bool,
    log: logging.Logger,
) -> CollectResult:
    """Unpack ``sources`` into the (empty) folder ``staging``, attribute their files, and copy
    every student's whose entries were all accepted into ``submitted/`` (module docstring)."""
    released = released_notebooks(coursedir, assignment)
    if not released:
        raise CollectError(f"{assignment} has no released notebooks: run `python -m grading release {assignment}`")
    limits = extractor.limits(coursedir)
    batch = unpack(sources, staging, limits, extractor.max_members, extractor.max_depth)
    result = CollectResult()
    submissions = plan(batch, collector, released, staging, result)
    for student, submission in sorted(submissions.items()):
        if not submission.problems:
            try:
                result.collected[student] = write_submission(
                    coursedir, assignment, student, submission, staging, limits, force
                )
                log.info("collected %s: %s", student, ", ".join(result.collected[student]))
                continue
            except (OSError, ValueError, OverflowError) as error:
                reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                submission.problems.append(f"not collected: {reason}")
        more = f" (and {len(submission.problems) - 3} more)" if len(submission.problems) > 3 else ""
        result.refused[student] = "; ".join(submission.problems[:3]) + more
        result.lines.append(f"refused submission {student}, nothing of it collected: {result.refused[student]}")
    return result


def summary(result: CollectResult) -> str:
    """One line: how many submissions were collected, and refused."""
    line = f"collected {len(result.collected)} submission(s): {', '.join(result.collected)}"
    if result.refused:
        line += f"; refused {len(result.refused)}: {', '.join(result.refused)}"
    elif result.refused_files:
        line += f"; {result.refused_files} file(s) refused"
    return line
