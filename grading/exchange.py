"""Stock ``nbgrader collect`` (and the formgrader's Collect button) without trusting the exchange.

nbgrader copies each submission from the exchange's inbound folder with ``shutil.copytree``,
which copies a link's *target* (the course's solutions, the gradebook, another student's
work, any file the instructor can read) and keeps mode bits (a setuid file stays setuid).
:class:`SafeExchangeCollect`, set as ``c.ExchangeFactory.collect`` by
:func:`grading.config.configure`, copies with :func:`grading.safefiles.copy_tree_safely`
instead: plain files and folders only, never through a link, files 0644 and folders 0755,
only the released notebooks and the files ``SubmissionCollector.allowed_files`` allows
(nbgrader's ``CourseDirectory.ignore`` still skips checkpoints and caches), within
nbgrader's ``max_file_size`` and ``max_dir_size``. A submission holding a link, a device,
a set-id file or too many bytes is refused whole (one line per refused entry), and so is a
student whose newest record is named with a student id that is not one (``$(id)``) or a time
that is not a date (nbgrader would fail the whole run on it); the others are collected, and
the command then fails (exit status 1).
"""

from __future__ import annotations

import contextlib
import datetime
import fnmatch
import os
import shutil

from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.utils import parse_utc

from .collect import STUDENT_ID, SubmissionCollector, released_notebooks
from .safefiles import Limits, allow_patterns, copy_tree_safely, shown


class SafeExchangeCollect(ExchangeCollect):
    """nbgrader's exchange collect, copying each submission with :func:`copy_tree_safely`."""

    def start(self):
        self.refused: dict[str, str] = {}
        self.bad_records: dict[str, str] = {}
        super().start()

    def _path_to_record(self, path: str) -> dict:
        """nbgrader's record of the inbound entry ``path`` (``STUDENT+ASSIGNMENT+TIME+RANDOM``); one
        whose student id or time is not one is kept (as the oldest) and refused in :meth:`init_src`."""
        filename = os.path.basename(path)
        username, _, stamp = filename.rsplit("+", 3)[:3]  # the inbound glob guarantees two '+'
        problem = None if STUDENT_ID.fullmatch(username) else f"{shown(username)!r} is not a valid student id"
        try:
            timestamp = parse_utc(stamp)
        except (ValueError, OverflowError) as error:
            timestamp, problem = datetime.datetime.min, problem or f"its time {shown(stamp)!r} is not a date ({error})"
        if problem:
            self.bad_records[filename] = problem
            self.log.error("refused %s: %s", shown(filename), problem)
        return {"username": username, "filename": filename, "timestamp": timestamp}

    def init_src(self) -> None:
        """nbgrader's choice of each student's record, less the students whose chosen one is refused."""
        super().init_src()
        kept = []
        for record in self.src_records:
            problem = self.bad_records.get(record["filename"])
            if problem is None:
                kept.append(record)
                continue
            self.refused[shown(record["username"])] = problem
            self.log.error("refused submission %s, nothing of it collected: %s", shown(record["username"]), problem)
        self.src_records = kept

    def do_copy(self, src: str, dest: str, log=None) -> None:
        """Copy the inbound submission ``src`` to ``dest`` safely; a submission with an entry that
        is not plain, or over the limits, is not collected (and remembered, see :meth:`copy_files`)."""
        coursedir = self.coursedir
        released = released_notebooks(coursedir, coursedir.assignment_id)
        extra = allow_patterns(SubmissionCollector(parent=self).allowed_files)

        def ignored(relative: str) -> bool:  # nbgrader's CourseDirectory.ignore: skipped silently
            return any(fnmatch.fnmatch(part, pattern) for part in relative.split("/") for pattern in coursedir.ignore)

        def allowed(relative: str) -> bool:
            return not ignored(relative) and (relative in released or extra(relative))

        limits = Limits(1000 * coursedir.max_file_size, 1000 * coursedir.max_dir_size)
        copied, refused = copy_tree_safely(src, dest, allowed, limits)
        record = os.path.basename(src)
        student = record.rsplit("+", 3)[0]
        hostile = [r for r in refused if r.reason != "not an allowed file"]
        for refusal in refused:
            where = record if refusal.path == "." else f"{record}/{shown(refusal.path)}"
            if refusal in hostile:
                self.log.error("refused %s: %s", where, refusal.reason)
            elif not ignored(refusal.path):
                self.log.warning("skipped %s: not an allowed file", where)
        if hostile:
            self.refused[student] = "; ".join(r.reason if r.path == "." else str(r) for r in hostile[:3])
        elif not any(name in released for name in copied):
            self.refused[student] = f"no released notebook ({', '.join(released)}) among its files"
        if student in self.refused:
            shutil.rmtree(dest, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(dest))  # nbgrader made it for this submission; keep it if it holds others
            self.log.error("refused submission %s, nothing of it collected: %s", student, self.refused[student])

    def copy_files(self) -> None:
        umask = os.umask(0o022)  # the folders nbgrader creates (submitted/STUDENT) are 0755 too
        try:
            super().copy_files()
        finally:
            os.umask(umask)
        if self.refused:
            self.fail(f"{len(self.refused)} submission(s) refused, the others collected: {', '.join(self.refused)}")
