"""nbgrader configuration of the course: the repository root is the course directory.

Every nbgrader command run here (``nbgrader autograde``, the formgrader, and
``python -m grading ...``) grades with the rules in ``grading/config.py``: solutions/
is the source, exercises/ the release, and students' code runs in the sandbox.
"""

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from grading.config import configure  # noqa: E402

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)
configure(c, ROOT)
