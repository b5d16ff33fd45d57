"""Collecting submissions trusts nothing: hostile archives, folders and exchange submissions.

Every class of hostile entry (a link, a hard link, a device, a FIFO, a socket, set-id bits,
``..``, an absolute path, a drive letter or backslash, a control character or bytes that are
not UTF-8 in a name, duplicate and case-colliding names, a folder named like a notebook, a
member or an archive too large, too many members, archives nested too deep, a corrupt
archive, a tar that writes through its own link, a forged timestamp; in the exchange: a
linked record, a hard link to the solution, a student id ``$(id)``, a time that is not a date) is
built here and collected with the course's command (as root with umask 000 and as an
ordinary user with umask 077), stock ``nbgrader zip_collect`` and stock ``nbgrader collect``
(as root). After each run: only plain files (0644) and folders (0755) under ``submitted/``
and ``downloaded/``, no set-id bit in the course, nothing written outside it, every good
student collected byte for byte, every hostile student refused and named with the reason,
exit status 1. One released course serves the module (each command costs seconds).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import uuid
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from catalog import ASSIGNMENT, SOURCE
from course_tools import ORDINARY_USER, course_base, make_course, ordinary_user_python, released_course

from grading.archives import name_problem
from grading.safefiles import Limits, TreeWriter, copy_tree_safely, special_files
from grading.workflow import Course, StepFailed

NB = f"{ASSIGNMENT}.ipynb"
TAG = uuid.uuid4().hex[:8]
ESCAPE = f"grading-escape-{TAG}"  # every path a hostile member aims at outside the course holds this
THROUGH = Path(tempfile.gettempdir()) / f"grading-through-{TAG}"
EXTRA_CONFIG = """
c.CourseDirectory.max_file_size = 1000  # kilobytes: a 2 MB member is too large here
c.SafeExtractor.max_members = 200
"""
REG, LINK, DIR = stat.S_IFREG, stat.S_IFLNK, stat.S_IFDIR


# -- building hostile archives ------------------------------------------------------------------
def zip_bytes(members: list[tuple[str, bytes, int]]) -> bytes:
    """A zip of ``(name, data, st_mode)`` members, names and modes as given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.create_system, info.external_attr, info.compress_type = 3, mode << 16, zipfile.ZIP_DEFLATED
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a duplicate name is what the test wants
                archive.writestr(info, data)
    return buffer.getvalue()


def encrypted_zip(name: str, data: bytes) -> bytes:
    """A zip of one member flagged as encrypted (bit 0 of its flags, in both of its headers)."""
    raw = bytearray(zip_bytes([(name, data, REG | 0o644)]))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        raw[raw.index(signature) + offset] |= 0x1
    return bytes(raw)


def raw_name_zip(placeholder: str, raw: bytes, data: bytes) -> bytes:
    """A zip whose one member's name is the bytes ``raw`` (not UTF-8, no UTF-8 flag)."""
    assert len(placeholder.encode()) == len(raw)
    return zip_bytes([(placeholder, data, REG | 0o644)]).replace(placeholder.encode(), raw)


def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=tarfile.GNU_FORMAT, errors="surrogateescape") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size, info.mode = len(member[1]), 0o644
                archive.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def tar_special(name: str, kind: bytes, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


def moodle(name: str, number: int) -> str:
    return f"{name}_{number}_assignsubmission_file_"


@dataclass
class Batch:
    """A batch to collect, the students that must be collected (with their notebook's bytes)
    and those that must be refused (with a word of the reason)."""

    path: Path
    good: dict[str, bytes]
    refused: dict[str, str]
    lines: list[str]  # other lines the output must hold


def moodle_batch(folder: Path, release: bytes) -> Batch:
    """Moodle's "download all submissions" zip (a folder per participant), students' own zips
    and tars inside, one hostile student per class."""
    nb = release
    huge = b"\0" * 2_000_001
    deep = zip_bytes(
        [("inner.zip", zip_bytes([("innermost.zip", zip_bytes([(NB, nb, REG | 0o644)]), REG | 0o644)]), REG | 0o644)]
    )
    own_tar = tar_bytes([(f"carol/{NB}", nb)])
    through = tar_bytes([tar_special("link", tarfile.SYMTYPE, str(THROUGH)), ("link/pwned.txt", b"pwned"), (NB, nb)])
    specials = tar_bytes(
        [
            (NB, nb),
            tar_special("hard", tarfile.LNKTYPE, f"../../../../solutions/{ASSIGNMENT}/{NB}"),
            tar_special("null", tarfile.CHRTYPE),
            tar_special("pipe", tarfile.FIFOTYPE),
        ],
        mode="w:bz2",
    )
    members = [
        (f"{moodle('Alice Good', 1001)}/{NB}", nb, REG | 0o777),
        (
            f"{moodle('Bob Zip', 1002)}/my work.zip",
            zip_bytes(
                [(NB, nb, REG | 0o755), ("notes.txt", b"notes", REG | 0o644), ("timestamp.txt", b"2000-01-01", REG)]
            ),
            REG | 0o644,
        ),
        (f"{moodle('Carol Tar', 1003)}/work.tar.gz", own_tar, REG | 0o644),
        (f"{moodle('Dan Flat', 1004)}{NB}", nb, REG | 0o644),
        (f"{moodle('Erin Text', 1005)}/{NB}", nb, REG | 0o644),
        ("Erin Text_1005_assignsubmission_onlinetext_/onlinetext.html", b"<p>hi</p>", REG | 0o644),
        (
            f"{moodle('Tom Up', 2001)}/w.zip",
            zip_bytes([(NB, nb, REG | 0o644), ("../" * 12 + f"tmp/{ESCAPE}", b"x", REG)]),
            REG,
        ),
        (f"{moodle('Abe Solute', 2002)}/w.zip", zip_bytes([(NB, nb, REG), (f"/tmp/{ESCAPE}-abs", b"x", REG)]), REG),
        (f"{moodle('Lin Link', 2003)}/{NB}", b"/etc/passwd", LINK | 0o777),
        (f"{moodle('Thru Tar', 2004)}/t.tgz", through, REG | 0o644),
        (f"{moodle('Dev Tar', 2005)}/t.tar.bz2", specials, REG | 0o644),
        (f"{moodle('Sue Id', 2006)}/{NB}", nb, REG | 0o104755),
        (f"{moodle('Dup Names', 2007)}/w.zip", zip_bytes([(NB, nb, REG), (NB, nb, REG)]), REG),
        (f"{moodle('Case Clash', 2008)}/{NB}", nb, REG | 0o644),
        (f"{moodle('Case Clash', 2008)}/{NB.upper()}", nb, REG | 0o644),
        (f"{moodle('Bo Mb', 2009)}/w.zip", zip_bytes([(NB, nb, REG), ("zeros.ipynb", huge, REG)]), REG),
        (f"{moodle('Many Files', 2010)}/w.zip", zip_bytes([(f"f{i}.txt", b"", REG) for i in range(201)]), REG),
        (f"{moodle('Not Utf', 2011)}/w.zip", raw_name_zip("bad-X.ipynb", b"bad-\xff.ipynb", nb), REG),
        (f"{moodle('Esc Ape', 2012)}/w.zip", zip_bytes([(NB, nb, REG), ("evil\x1b[2J.txt", b"x", REG)]), REG),
        (f"{moodle('Dir Nb', 2013)}/{NB}/", b"", DIR | 0o755),
        (f"{moodle('Dir Nb', 2013)}/{NB}/x", b"x", REG | 0o644),
        (
            f"{moodle('Win Dows', 2014)}/w.zip",
            zip_bytes([(NB, nb, REG), ("..\\..\\evil.txt", b"x", REG), ("C:/e", b"", REG)]),
            REG,
        ),
        (f"{moodle('Deep Nest', 2015)}/w.zip", deep, REG | 0o644),
        (f"{moodle('Bad Zip', 2016)}/w.zip", b"PK\x03\x04 this is not a zip at all", REG | 0o644),
        (f"{moodle('En Crypt', 2017)}/w.zip", encrypted_zip(NB, nb), REG | 0o644),
        ("../" + ESCAPE, b"x", REG | 0o644),  # belongs to nobody: refused alone
    ]
    path = folder / "moodle_batch.zip"
    path.write_bytes(zip_bytes(members))
    refused = {
        "2001": "'..'",
        "2002": "an absolute path",
        "2003": "a link to /etc/passwd",
        "2004": f"a link to {THROUGH}",
        "2005": "a hard link to",
        "2006": "setuid",
        "2007": "a second member named like",
        "2008": "a second member named like",
        "2009": "larger than 1000000 bytes",
        "2010": "more than 200 members",
        "2011": "not valid UTF-8",
        "2012": "a control or invisible formatting character",
        "2013": "a folder named like a notebook",
        "2014": "a backslash",
        "2015": "an archive inside 3 archives",
        "2016": "not a readable zip",
        "2017": "encrypted",
    }
    lines = [
        f"refused moodle_batch.zip!../{ESCAPE}: a '..' in its name",
        "refused moodle_batch.zip!Dev Tar_2005_assignsubmission_file_/t.tar.bz2!null: a character device",
        "refused moodle_batch.zip!Dev Tar_2005_assignsubmission_file_/t.tar.bz2!pipe: a FIFO",
        "skipped moodle_batch.zip!Bob Zip_1002_assignsubmission_file_/my work.zip!notes.txt: not an allowed file",
        "skipped moodle_batch.zip!Bob Zip_1002_assignsubmission_file_/my work.zip!timestamp.txt: a timestamp.txt "
        "from inside a student's upload is not trusted",
        "skipped moodle_batch.zip!Erin Text_1005_assignsubmission_onlinetext_/onlinetext.html: not an allowed file",
    ]
    good = {"1001": nb, "1002": nb, "1003": nb, "1004": nb, "1005": nb}
    return Batch(path, good, refused, lines)


def folder_batch(folder: Path, release: bytes, course: Path) -> Batch:
    """A folder per student on disk (and flat files), with every kind of special file."""
    batch = folder / "batch"
    batch.mkdir()
    solution = course / "solutions" / ASSIGNMENT / NB

    def student(name: str, data: bytes = release, mode: int = 0o644) -> Path:
        (batch / name).mkdir()
        (batch / name / NB).write_bytes(data)
        (batch / name / NB).chmod(mode)
        return batch / name

    student("ivy", mode=0o777)
    (batch / "ivy" / "timestamp.txt").write_text("2030-01-02 10:00:00 UTC")
    (batch / f"jack_{NB}").write_bytes(release)
    (batch / "kate").mkdir()
    (batch / "kate" / NB).symlink_to(solution)
    (student("leo") / "extra").symlink_to("/etc")
    student("mia", mode=0o4755)
    (batch / "ned").mkdir()
    os.link(solution, batch / "ned" / NB)
    os.mkfifo(student("olive") / "pipe")
    os.mknod(student("pam") / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(student("rex") / "sock"))
    (batch / f"sam_{NB}").symlink_to(solution)
    (student("tia") / "sub").mkdir()
    (batch / "tia" / "sub").chmod(0o3777)  # setgid and sticky
    (batch / "quin").symlink_to(batch / "ivy")
    os.chmod(batch, 0o755)
    refused = {
        "kate": "a link to",
        "leo": "a link to /etc",
        "mia": "setuid",
        "ned": "a hard link",
        "olive": "a FIFO",
        "pam": "a character device",
        "rex": "a socket",
        "sam": "a link to",
        "tia": "setgid and sticky",
    }
    return Batch(batch, {"ivy": release, "jack": release}, refused, ["refused batch/quin: a link to"])


def exchange_inbound(course: Path, release: bytes) -> Batch:
    """An exchange inbound as students' ``nbgrader submit`` fills it, with hostile submissions."""
    inbound = course / "nbgrader_exchange" / "robustness-practicum" / "inbound"
    inbound.mkdir(parents=True, exist_ok=True)
    solution = course / "solutions" / ASSIGNMENT / NB

    def record(student: str) -> Path:
        path = inbound / f"{student}+{ASSIGNMENT}+2024-01-01 10:00:00.000000 UTC+{uuid.uuid4().hex[:6]}"
        path.mkdir()
        (path / NB).write_bytes(release)
        (path / NB).chmod(0o777)
        (path / "timestamp.txt").write_text("2024-01-01 10:00:00.000000 UTC")
        return path

    good = record("alice")
    (good / ".ipynb_checkpoints").mkdir()
    (good / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_bytes(release)
    (good / "notes.txt").write_text("notes")
    (inbound / f"bob+{ASSIGNMENT}+2024-01-01 10:00:00.000000 UTC+linked").symlink_to(solution.parent)
    (record("carol") / NB).unlink()
    (inbound.glob("carol+*").__next__() / NB).symlink_to(solution)
    (record("dave") / NB).chmod(0o4755)
    os.mkfifo(record("erin") / "pipe")
    (record("fay") / NB).unlink()
    os.link(solution, inbound.glob("fay+*").__next__() / NB)
    (record("gus") / NB).write_bytes(b"\0" * 2_000_001)
    os.mknod(record("hal") / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    record("$(id)")  # a folder submitted/$(id)/ would trip any shell script that loops over students
    record("ivan").rename(inbound / f"ivan+{ASSIGNMENT}+not a date+x")  # nbgrader would fail the whole run
    refused = {
        "bob": "a link to",
        "carol": "a link to",
        "dave": "setuid",
        "erin": "a FIFO",
        "fay": "a hard link",
        "gus": "larger than 1000000 bytes",
        "hal": "a character device",
        "ivan": "its time 'not a date' is not a date",
        "$(id)": "'$(id)' is not a valid student id",
    }
    return Batch(inbound, {"alice": release}, refused, ["notes.txt: not an allowed file"])


# -- checks -------------------------------------------------------------------------------------
def assert_plain(course: Path) -> None:
    """Only plain files 0644 and folders 0755 under submitted/ and what was unpacked into
    downloaded/; no set-id bit anywhere in the course but in the inputs (the batch in archive/,
    the exchange); nothing aimed outside it was written."""
    for top in [course / "submitted", *(course / "downloaded").glob("*/extracted")]:
        for folder, names, files in os.walk(top):
            for name in names + files:
                info = os.lstat(os.path.join(folder, name))
                kind = "folder" if stat.S_ISDIR(info.st_mode) else "file" if stat.S_ISREG(info.st_mode) else "special"
                expected = {"folder": 0o755, "file": 0o644}.get(kind)
                assert stat.S_IMODE(info.st_mode) == expected, f"{folder}/{name}: {kind} {info.st_mode:o}"
                assert kind == "folder" or info.st_nlink == 1, f"{folder}/{name} is a hard link"
    inputs = {course / "nbgrader_exchange", *(course / "downloaded").glob("*/archive")}  # hostile, as given
    for folder, names, files in os.walk(course):
        names[:] = [name for name in names if Path(folder, name) not in inputs]
        for name in names + files:
            assert not os.lstat(os.path.join(folder, name)).st_mode & (stat.S_ISUID | stat.S_ISGID), name
            assert ESCAPE not in name, f"{folder}/{name}"
    for place in (Path(tempfile.gettempdir()), Path("/tmp"), course.parent):
        assert not list(place.glob(f"{ESCAPE}*")), place
    assert not (THROUGH / "pwned.txt").exists()


def assert_collected(course: Path, batch: Batch, output: str, returncode: int) -> None:
    assert returncode == 1, output
    submitted = course / "submitted"
    for student, data in batch.good.items():
        assert (submitted / student / ASSIGNMENT / NB).read_bytes() == data, f"{student}\n{output}"
    for student, reason in batch.refused.items():
        assert not (submitted / student).exists(), f"{student} was collected\n{output}"
        line = next((line for line in output.splitlines() if f"refused submission {student}," in line), "")
        assert reason in line, f"{student}: {reason!r} not in {line!r}\n{output}"
    for expected in batch.lines:
        assert expected in output, f"{expected!r} not in\n{output}"
    assert_plain(course)


# -- the commands, as root and as an ordinary user ----------------------------------------------
@dataclass
class Runner:
    """How to run commands in the released course: as root (umask 000) or as an ordinary user
    who owns the course (umask 077); neither umask may change the modes collected."""

    course: Path
    prefix: list[str]
    umask: int

    def run(self, *command: str) -> subprocess.CompletedProcess:
        """``command`` in the course directory, ``python`` standing for the course's Python."""
        line = [*self.prefix, "env", f"HOME={self.course}", *[sys.executable if c == "python" else c for c in command]]
        return subprocess.run(
            line,
            cwd=self.course,
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=lambda: os.umask(self.umask),
        )


@pytest.fixture(scope="module")
def course():
    """One released course for the whole module (each test empties submitted/ and downloaded/)."""
    course = released_course(EXTRA_CONFIG)
    THROUGH.mkdir(exist_ok=True)
    yield course
    shutil.rmtree(course, ignore_errors=True)
    shutil.rmtree(THROUGH, ignore_errors=True)


@pytest.fixture
def root(course):
    reset(course)
    return Runner(course, [], 0o000)


@pytest.fixture
def scratch():
    folder = Path(tempfile.mkdtemp(prefix="grading-batch-", dir=course_base()))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def release_bytes(course: Path) -> bytes:
    return (course / "exercises" / ASSIGNMENT / NB).read_bytes()


def reset(course: Path) -> None:
    for name in ("submitted", "downloaded"):
        shutil.rmtree(course / name, ignore_errors=True)


def combined_batch(scratch: Path, course: Path) -> Batch:
    """The folder batch with the Moodle zip in it: a zip at the top of a folder is named for its
    student, so the zip's member that belongs to nobody there (``../``) refuses ``moodle_batch``."""
    folder = folder_batch(scratch, release_bytes(course), course)
    lms = moodle_batch(folder.path, release_bytes(course))
    refused = {**folder.refused, **lms.refused, "moodle_batch": "'..'"}
    lines = [line.replace(" moodle_batch.zip!", " batch/moodle_batch.zip!") for line in lms.lines]
    return Batch(folder.path, {**folder.good, **lms.good}, refused, folder.lines + lines)


def test_course_command_as_an_ordinary_user(course, scratch):
    """umask 077: files 0644 and folders 0755 all the same; -v shows each student's files."""
    reset(course)
    python = ordinary_user_python()  # creates the user if missing: before the chown, whatever ran first
    subprocess.run(["chown", "-R", f"{ORDINARY_USER}:", str(course)], check=True)
    user = Runner(course, python[:-1], 0o077)
    batch = combined_batch(scratch, course)
    result = user.run("python", "-m", "grading", "-v", "collect", ASSIGNMENT, str(batch.path))
    assert_collected(course, batch, result.stdout + result.stderr, result.returncode)
    assert (course / "submitted" / "ivy" / ASSIGNMENT / "timestamp.txt").read_text().startswith("2030-01-02 10:00:00")
    assert f"[INFO] collected ivy: {NB}, timestamp.txt" in result.stderr


def test_course_command_as_root(root, scratch):
    """umask 000, the set-id files of a zip and of a folder: none collected; nbgrader's log only with -v."""
    batch = combined_batch(scratch, root.course)
    result = root.run("python", "-m", "grading", "collect", ASSIGNMENT, str(batch.path))
    output = result.stdout + result.stderr
    assert_collected(root.course, batch, output, result.returncode)
    assert "[INFO]" not in output and "ZipCollectApp" not in output
    last = result.stdout.splitlines()[-1]
    assert last.startswith("collected 7 submission(s): 1001, 1002, 1003, 1004, 1005, ivy, jack; "), last
    assert f"refused {len(batch.refused)}: " in last


def test_stock_zip_collect_is_as_safe(root):
    course = root.course
    archive = course / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    moodle = moodle_batch(archive, release_bytes(course))
    folder = folder_batch(archive, release_bytes(course), course)
    result = root.run("python", "-m", "nbgrader", "zip_collect", ASSIGNMENT, "--force")
    output = result.stdout + result.stderr
    both = Batch(archive, {**moodle.good, **folder.good}, {**moodle.refused, **folder.refused}, moodle.lines)
    assert_collected(course, both, output, result.returncode)
    assert "No files found" not in output and "Skipped submission" not in output


def test_stock_collect_from_the_exchange_is_as_safe(root):
    course = root.course
    shutil.rmtree(course / "nbgrader_exchange" / "robustness-practicum", ignore_errors=True)
    batch = exchange_inbound(course, release_bytes(course))
    result = root.run("python", "-m", "nbgrader", "collect", ASSIGNMENT)
    output = result.stdout + result.stderr
    assert_collected(course, batch, output, result.returncode)
    assert sorted(p.name for p in (course / "submitted" / "alice" / ASSIGNMENT).iterdir()) == [NB, "timestamp.txt"]
    assert "x-checkpoint" not in output  # nbgrader's ignore list still skips checkpoints silently


# -- the building blocks, in process ------------------------------------------------------------
def test_special_files_names_every_kind(tmp_path):
    (tmp_path / "plain").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to("/etc/passwd")
    (tmp_path / "folder" / "dirlink").symlink_to("/etc")
    os.link(tmp_path / "plain", tmp_path / "hard")
    os.mkfifo(tmp_path / "fifo")
    os.mknod(tmp_path / "block", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
    (tmp_path / "suid").write_text("x")
    (tmp_path / "suid").chmod(0o4755)
    (tmp_path / "sticky").mkdir()
    (tmp_path / "sticky").chmod(0o1777)
    found = special_files(str(tmp_path))
    assert found == [
        "block (a block device)",
        "fifo (a FIFO)",
        "folder/dirlink (a link to /etc)",
        "hard (a hard link, one of 2 names of a file)",
        "link (a link to /etc/passwd)",
        "plain (a hard link, one of 2 names of a file)",
        "sock (a socket)",
        "sticky (sticky, mode 1777)",
        "suid (setuid, mode 4755)",
    ]
    (tmp_path / "up").symlink_to(tmp_path / "folder")
    assert special_files(str(tmp_path / "up"), up_to=str(tmp_path)) == [
        ". (a link to " + str(tmp_path / "folder") + ")"
    ]
    (tmp_path / "folder" / "dirlink").unlink()
    (tmp_path / "folder" / "deeper").mkdir()
    assert special_files(str(tmp_path / "up" / "deeper"), up_to=str(tmp_path)) == [
        f".. (a link to {tmp_path / 'folder'})"
    ]
    assert special_files(str(tmp_path / "folder")) == []


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_copy_tree_safely_keeps_no_mode_and_follows_no_link(tmp_path, umask):
    src = tmp_path / "src"
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "a.ipynb").write_text("a")
    (src / "a.ipynb").chmod(0o777)
    (src / "sub").chmod(0o700)
    (src / "sub" / "deep" / "b.ipynb").write_text("b")
    (src / "sub" / "deep" / "secret").symlink_to(SOURCE)
    (src / "sub" / "linked").symlink_to(SOURCE.parent)
    (src / "big.ipynb").write_bytes(b"x" * 101)
    (src / "notes.txt").write_text("n")
    old = os.umask(umask)
    try:
        copied, refused = copy_tree_safely(str(src), str(tmp_path / "out" / "dst"), ["*.ipynb"], Limits(100, 10_000, 5))
    finally:
        os.umask(old)
    assert copied == ["a.ipynb", "sub/deep/b.ipynb"]
    assert {str(r) for r in refused} == {
        "big.ipynb: larger than 100 bytes",
        "notes.txt: not an allowed file",
        f"sub/deep/secret: a link to {SOURCE}",
        f"sub/linked: a link to {SOURCE.parent}",
    }
    modes = {
        str(p.relative_to(tmp_path)): stat.S_IMODE(p.lstat().st_mode)
        for p in [tmp_path / "out", *tmp_path.joinpath("out").rglob("*")]
    }
    assert modes == {
        "out": 0o755,
        "out/dst": 0o755,
        "out/dst/a.ipynb": 0o644,
        "out/dst/sub": 0o755,
        "out/dst/sub/deep": 0o755,
        "out/dst/sub/deep/b.ipynb": 0o644,
    }
    (tmp_path / "link-src").symlink_to(src)
    assert copy_tree_safely(str(tmp_path / "link-src"), str(tmp_path / "dst2")) == ([], [(".", f"a link to {src}")])
    assert not (tmp_path / "dst2").exists()


def test_tree_writer_refuses_climbing_links_and_overwrites(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "out").symlink_to(tmp_path)
    with TreeWriter(str(tmp_path / "root"), Limits(10, 15, 2)) as writer:
        for bad in ("../x", "/etc/x", "a//b", "./a"):
            with pytest.raises(ValueError):
                writer.write(bad, io.BytesIO(b""))
        with pytest.raises(OSError):  # ELOOP or ENOTDIR: never through the link
            writer.write("out/x", io.BytesIO(b"x"))
        writer.write("a/b", io.BytesIO(b"0123456789"))
        with pytest.raises(FileExistsError):
            writer.write("a/b", io.BytesIO(b"x"))
        with pytest.raises(OSError, match="more than 15 bytes in all"):
            writer.write("a/c", io.BytesIO(b"0123456789"))
        assert not (tmp_path / "root" / "a" / "c").exists()  # the partial file is removed
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a/../../b", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/Windows/x", "drive letter"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "NUL"),
        ("a\nb", "control"),
        ("a\u202eb.txt", "invisible formatting"),
        ("bad\udcff", "not valid UTF-8"),
        ("/".join(["d"] * 40), "deeper"),
        ("x" * 300, "too long"),
        ("", "empty"),
    ],
)
def test_hostile_names(name, problem):
    assert problem in name_problem(name)


@pytest.mark.parametrize("name", ["a/b.ipynb", "./a/b", "Alice Smith_12_assignsubmission_file_/nb.ipynb", "é/ü.ipynb"])
def test_plain_names(name):
    assert name_problem(name) is None


def test_layouts_in_process(course, scratch):
    """Each layout the module docstring lists, with one course (the command's behaviour is tested above)."""
    reset(course)
    nb = release_bytes(course)
    batch = scratch / "layouts"
    (batch / "download" / "amy").mkdir(parents=True)
    (batch / "download" / "amy" / NB).write_bytes(nb)  # a wrapper folder, then a folder per student
    (batch / "ben").mkdir()
    (batch / "ben" / "work.zip").write_bytes(zip_bytes([(f"my folder/{NB}", nb, REG | 0o644)]))
    (batch / "cat.zip").write_bytes(zip_bytes([(NB, nb, REG | 0o644)]))  # a student's archive, named for them
    (batch / "dot.tar.xz").write_bytes(tar_bytes([(f"sub/{NB}", nb), ("sub/timestamp.txt", b"2020-01-01")], "w:xz"))
    (batch / f"eve_{NB}").write_bytes(nb)
    (batch / "fox").mkdir()
    (batch / "fox" / "readme.txt").write_text("no notebook")
    result = Course(str(course)).collect(ASSIGNMENT, str(batch))
    assert sorted(result.collected) == ["amy", "ben", "cat", "dot", "eve"], result.lines
    for student in result.collected:
        assert (course / "submitted" / student / ASSIGNMENT / NB).read_bytes() == nb
    assert "skipped layouts/fox/readme.txt: no student id found in its path or name" in result.lines
    assert result.ok and not (course / "submitted" / "dot" / ASSIGNMENT / "timestamp.txt").exists()
    alone = scratch / "alone.zip"
    alone.write_bytes(zip_bytes([(NB, nb, REG | 0o644)]))
    assert list(Course(str(course)).collect(ASSIGNMENT, str(alone)).collected) == ["alone"]
    regexp = r".*/(?P<student_id>[a-z]+)-attempt-(?P<timestamp>[0-9-]+ [0-9:]+)-(?P<file_id>.*)"
    config = course / "nbgrader_config.py"
    original = config.read_text()
    config.write_text(original + f"c.FileNameCollectorPlugin.named_regexp = {regexp!r}\n")
    attempts = scratch / "attempts"
    attempts.mkdir()
    (attempts / f"gil-attempt-2024-01-01 10:00:00-{NB}").write_bytes(b"old")
    (attempts / f"gil-attempt-2024-01-02 10:00:00-{NB}").write_bytes(nb)
    try:
        result = Course(str(course)).collect(ASSIGNMENT, str(attempts))
    finally:
        config.write_text(original)
    assert list(result.collected) == ["gil"], result.lines  # the newest attempt, as nbgrader does
    assert (course / "submitted" / "gil" / ASSIGNMENT / NB).read_bytes() == nb
    assert (course / "submitted" / "gil" / ASSIGNMENT / "timestamp.txt").read_text() == "2024-01-02 10:00:00"


def test_collect_needs_a_release(scratch):
    course = make_course(EXTRA_CONFIG)
    try:
        with pytest.raises(StepFailed, match="has no released notebooks"):
            Course(str(course)).collect(ASSIGNMENT, str(scratch))
    finally:
        shutil.rmtree(course, ignore_errors=True)
