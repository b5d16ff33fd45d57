"""The course's public address in the notebooks: "Open in Colab" and Binder links, install source.

The repository's address is set once, in ``pyproject.toml`` (``[tool.practicum] repository``).
Every solution notebook's title cell ends with a line of links to its *exercise* (what students
open): two badge images, and nothing else on the line (an HTML comment at the start of a line
would make CommonMark, and so JupyterLab and GitHub, read the whole line as raw HTML). The
line is found by its content, the two badge images. The locked setup cell installs the course
from that address when ``helpers`` is missing (Colab). A fork changes the address and runs::

    python -m grading.links          # rewrite the links and the install source in solutions/
    python -m grading release NN_topic   # then regenerate the exercises

``--check`` only reports notebooks that are out of date (exit status 1).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path
from urllib.parse import quote

import nbformat

ROOT = Path(__file__).resolve().parent.parent
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
SOURCE_PATTERN = re.compile(r'^(COURSE_SOURCE = os\.environ\.get\("PRACTICUM_COURSE_SOURCE", )"[^"]*"\)', re.M)


def repository(root: Path = ROOT) -> tuple[str, str]:
    """(URL, branch) of the course's public repository, from ``pyproject.toml``."""
    settings = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["practicum"]
    return settings["repository"].rstrip("/"), settings.get("branch", "main")


def links_line(name: str, url: str, branch: str) -> str:
    """Markdown badges opening ``exercises/NAME/NAME.ipynb`` on Colab and on Binder."""
    slug = url.removeprefix("https://github.com/").removesuffix(".git")
    path = f"exercises/{name}/{name}.ipynb"
    colab = f"https://colab.research.google.com/github/{slug}/blob/{branch}/{path}"
    binder = f"https://mybinder.org/v2/gh/{slug}/{branch}?urlpath={quote('lab/tree/' + path, safe='')}"
    return f"[![Open in Colab]({COLAB_BADGE})]({colab}) [![Launch Binder]({BINDER_BADGE})]({binder})"


def is_links_line(line: str) -> bool:
    """Whether ``line`` is a links line (this one or an earlier form): it shows both badges."""
    return f"({COLAB_BADGE})" in line and f"({BINDER_BADGE})" in line


def stamp(nb: nbformat.NotebookNode, name: str, url: str, branch: str) -> bool:
    """Put the links line at the end of the title cell and the URL in the install cell; True if changed."""
    title = nb.cells[0]
    lines = [line for line in title.source.splitlines() if not is_links_line(line)]
    while lines and not lines[-1].strip():
        lines.pop()
    new_title = "\n".join(lines + ["", links_line(name, url, branch)])
    setup = next(cell for cell in nb.cells if cell.cell_type == "code")
    if not SOURCE_PATTERN.search(setup.source):
        raise ValueError(f"{name}: the setup cell has no `COURSE_SOURCE = os.environ.get(...)` line")
    new_setup = SOURCE_PATTERN.sub(lambda m: f'{m.group(1)}"{url}.git")', setup.source)
    changed = (new_title, new_setup) != (title.source, setup.source)
    title.source, setup.source = new_title, new_setup
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading.links", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date notebooks")
    args = parser.parse_args(argv)
    url, branch = repository()
    stale = []
    for path in sorted(ROOT.glob("solutions/*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if stamp(nb, path.stem, url, branch):
            stale.append(path.relative_to(ROOT))
            if not args.check:
                nbformat.write(nb, path)
    for path in stale:
        print(f"{'out of date' if args.check else 'updated'}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
