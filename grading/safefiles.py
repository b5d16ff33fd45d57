"""Provisional (the collect engineer replaces this module): special files under a directory."""

from __future__ import annotations

import os
import stat


def special_files(directory: str) -> list[str]:
    """Entries under ``directory`` (itself included) that are not plain files or directories."""
    found = []
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files, *([""] if root == directory else [])]:
            path = os.path.join(root, name) if name else root
            info = os.lstat(path)
            relative = os.path.relpath(path, directory)
            if stat.S_ISLNK(info.st_mode):
                found.append(f"{relative} (a link to {os.readlink(path)})")
            elif not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                found.append(f"{relative} (a special file)")
            elif stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                found.append(f"{relative} (a hard link)")
            elif info.st_mode & (stat.S_ISUID | stat.S_ISGID):
                found.append(f"{relative} (setuid or setgid)")
    return found
