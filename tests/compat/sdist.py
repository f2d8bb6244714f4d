# Other projects' sources, for the comparisons that run their own test suites
# through the proxy (django_suite.py, sqlalchemy_suite.py, driver_suite.py).
#
#   * unpacked_sdist(Sdist(...), cache): the sdist of PROJECT==VERSION, fetched
#     once with `pip download --no-binary PROJECT --no-deps` into `cache` (the
#     only place most projects ship their tests), with only the top-level
#     entries the comparison needs unpacked into cache/PROJECT-VERSION/ (a
#     marker file inside them must be there: an sdist without its tests is
#     refused, never taken for a good one). A folder that was unpacked whole
#     is marked .complete and used as it is; a cached .tar.gz is unpacked
#     without pip;
#   * installed_into(requirement, folder): a package that a suite needs in
#     another version than the project's (aiomysql's tests need SQLAlchemy
#     1.3), installed once with `pip install --target` into a folder of its
#     own, which that suite's runs put on PYTHONPATH.
# HarnessError is what every comparison raises when it cannot be made.
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

PIP_TIMEOUT = 300.0  # seconds for one `pip download` or `pip install --target`


class HarnessError(RuntimeError):
    """The comparison could not be made (not: the proxy failed tests)."""


@dataclasses.dataclass(frozen=True)
class Sdist:
    project: str  # its name on PyPI, in lower case
    label: str  # its name in messages: "SQLAlchemy"
    version: str
    keep: tuple[str, ...]  # the top-level files and folders to unpack: ("tests",)
    marker: str  # a file that must be among them: "tests/runtests.py"
    marker_is: str = ""  # what the marker is, for the message when it is missing

    @property
    def folder_name(self) -> str:
        return f"{self.project}-{self.version}"


def unpacked_sdist(sdist: Sdist, cache: Path, log: Callable[[str], None] = print) -> Path:
    """cache/PROJECT-VERSION/ with the sdist's `keep` entries, made once (see the module comment)."""
    unpacked = cache / sdist.folder_name
    if (unpacked / ".complete").exists():
        return unpacked
    archive = _find_sdist(cache, sdist) or _download_sdist(cache, sdist, log)
    log(f"unpacking {', '.join(sdist.keep)} of {archive.name} into {unpacked}")
    partial = cache / f".{sdist.folder_name}.partial"
    _remove_tree(partial)
    _extract(archive, partial, sdist.keep)
    if not (partial / sdist.marker).exists():
        _remove_tree(partial)
        what = f" ({sdist.marker_is})" if sdist.marker_is else ""
        raise HarnessError(f"{archive} has no {sdist.marker}{what}")
    _remove_tree(unpacked)
    partial.rename(unpacked)
    (unpacked / ".complete").write_text(archive.name + "\n")
    return unpacked


def _find_sdist(cache: Path, sdist: Sdist) -> Path | None:
    # Older sdists are named like Django-X.Y.Z.tar.gz or SQLAlchemy-X.Y.Z.tar.gz, newer ones in lower case.
    wanted = f"{sdist.folder_name}.tar.gz"
    found = [path for path in cache.glob("*.tar.gz") if path.name.lower() == wanted]
    return found[0] if found else None


def _download_sdist(cache: Path, sdist: Sdist, log: Callable[[str], None]) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    log(f"downloading the {sdist.label} {sdist.version} sdist into {cache}")
    # --no-binary for this project only: its build requirements come as wheels, where
    # `--no-binary :all:` would build them from source too (minutes).
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--no-binary", sdist.project, "--no-deps", "--dest", str(cache), f"{sdist.project}=={sdist.version}"]
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"pip download of the {sdist.label} {sdist.version} sdist took more than "
                           f"{PIP_TIMEOUT:.0f}s") from exc
    found = _find_sdist(cache, sdist)
    if done.returncode != 0 or found is None:
        raise HarnessError(f"could not download the {sdist.label} {sdist.version} sdist ({' '.join(cmd)}):\n"
                           f"{done.stdout}")
    return found


def _extract(archive_path: Path, target: Path, keep: tuple[str, ...]) -> None:
    """Unpack <top>/ENTRY and <top>/ENTRY/** of the sdist, for each ENTRY in `keep`, as target/ENTRY."""
    with tarfile.open(archive_path) as archive:
        members = []
        for member in archive.getmembers():
            _, _, rest = member.name.partition("/")
            if any(rest == entry or rest.startswith(entry + "/") for entry in keep):
                member.name = rest
                members.append(member)
        if not members:
            raise HarnessError(f"{archive_path} has none of {', '.join(keep)}")
        # The "data" filter refuses links and paths out of target (Python 3.11.4 and later).
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(target, members=members, **safe)


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def installed_into(requirement: str, folder: Path, log: Callable[[str], None] = print) -> Path:
    """`folder` with `requirement` (e.g. "sqlalchemy==1.3.24", no dependencies) installed in it, once."""
    if (folder / ".complete").exists():
        return folder
    log(f"installing {requirement} into {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.partial")
    _remove_tree(partial)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--target", str(partial), requirement]
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"pip install of {requirement} took more than {PIP_TIMEOUT:.0f}s") from exc
    if done.returncode != 0:
        _remove_tree(partial)
        raise HarnessError(f"could not install {requirement} ({' '.join(cmd)}):\n{done.stdout}")
    _remove_tree(folder)
    partial.rename(folder)
    (folder / ".complete").write_text(requirement + "\n")
    return folder
