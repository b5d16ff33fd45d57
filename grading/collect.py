"""Find each student's notebooks in a downloaded batch of submissions (for ``zip_collect``)."""

from __future__ import annotations

import glob
import os
import re

from nbgrader.plugins import FileNameCollectorPlugin

STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")


class SubmissionCollector(FileNameCollectorPlugin):
    """nbgrader's file-name collector, knowing the two layouts LMS downloads use.

    Without ``named_regexp`` it recognises, for each released notebook ``NB.ipynb``:

    - ``.../STUDENT/NB.ipynb``: a folder per student (optionally with ``timestamp.txt``,
      the submission time, next to the notebook);
    - ``.../STUDENT_NB.ipynb``: flat files prefixed with the student's id.

    With ``named_regexp`` set, it behaves exactly as nbgrader's own collector.
    """

    def released_notebooks(self) -> list[str]:
        coursedir = self.parent.coursedir
        release = coursedir.format_path(coursedir.release_directory, ".", coursedir.assignment_id)
        return sorted(os.path.basename(p) for p in glob.glob(os.path.join(release, "*.ipynb")))

    def collect(self, submitted_file: str) -> dict | None:
        if self.named_regexp or not submitted_file.endswith(".ipynb"):
            return super().collect(submitted_file)
        folder, name = os.path.split(submitted_file)
        notebooks = self.released_notebooks()
        if name in notebooks:
            student = os.path.basename(folder)
        else:
            student = next((name[: -len(nb) - 1] for nb in notebooks if name.endswith("_" + nb)), None)
            name = name[len(student) + 1 :] if student else name
        if not student or not STUDENT_ID.fullmatch(student):
            self.log.warning("Skipped %s: no student id and released notebook name found in it", submitted_file)
            return None
        info = {"student_id": student, "file_id": name}
        stamp = os.path.join(folder, "timestamp.txt")
        if os.path.isfile(stamp):
            with open(stamp) as f:
                info["timestamp"] = f.read().strip()
        return info
