"""The course's autograder: nbgrader, wrapped, sandboxed and made trustworthy.

Modules:

- ``grading.workflow``  the instructor's steps on nbgrader's Python API (``python -m grading``);
- ``grading.parallel``  autograding many submissions at once (process pool or Dask), same grades;
- ``grading.gradebook`` a submission's automatic results in the gradebook, as data;
- ``grading.config``    the nbgrader configuration that ``nbgrader_config.py`` applies;
- ``grading.sandbox``   autograde's kernels in bubblewrap with limits (``launcher.py`` starts them);
- ``grading.sanitize``  repairing submissions' JSON and restoring their graded structure;
- ``grading.checks``    tamper-resistant assertions for the notebooks' test cells;
- ``grading.outputs``   the checks' witnesses and output bounds, after execution;
- ``grading.audit``     review flags for student code that reaches into the tests;
- ``grading.report``    each submission's status (graded, flagged, failed, stale, missing);
- ``grading.feedback``  feedback without hidden tests;
- ``grading.export``    grades CSV with statuses;  ``grading.collect``: LMS batch layouts.
"""
