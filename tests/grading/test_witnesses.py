"""Signed witnesses (no kernels): only a check called from the test cell's own statement counts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from grading.checks import cell_digest, signature
from grading.witnesses import top_level_checks, unverified_checks

KEY = b"k" * 32
TEST_CELL = 'x = 1\ncheck.close(f(2), 4, label="doubles")\ncheck.between(\n    f(0.3),\n    0,\n    1,\n)\n'


def witness(check="close", line=2, cell=TEST_CELL, key=KEY, **changes):
    w = {"check": check, "label": "doubles", "cell": cell_digest(cell), "line": line, "count": 1, **changes}
    w["mac"] = signature(key, w)
    return w


def test_each_top_level_check_is_found_with_its_lines():
    assert top_level_checks(TEST_CELL, ["check"]) == [("close", 2, 2), ("between", 3, 7)]


def test_genuine_witnesses_verify():
    assert unverified_checks(TEST_CELL, [witness(), witness("between", line=4)], KEY, ["check"]) == []


def test_forged_or_misplaced_witnesses_do_not_count():
    good_between = witness("between", line=3)
    cases = {
        "unsigned": {k: v for k, v in witness().items() if k != "mac"},
        "another key": witness(key=b"x" * 32),
        "edited after signing": {**witness(), "line": 3},
        "called from another cell": witness(cell="real.close(1, 1)"),
        "called from another line": witness(line=1),
        "another check": witness("true"),
        "not a mapping": "close",
    }
    for name, bad in cases.items():
        assert unverified_checks(TEST_CELL, [bad, good_between], KEY, ["check"]) == ["close (line 2)"], name
    assert unverified_checks(TEST_CELL, [], KEY, ["check"]) == ["close (line 2)", "between (line 3)"]


def test_the_key_file_is_read_once_and_deleted(tmp_path):
    key_file = tmp_path / "witness.key"
    key_file.write_text("secret-key")
    code = textwrap.dedent("""
        import os
        from grading import checks
        print(checks._key, os.environ.get("GRADING_WITNESS_KEY_FILE"))
    """)
    env = {**os.environ, "GRADING_WITNESS_KEY_FILE": str(key_file)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["b'secret-key'", "None"] and not key_file.exists()
