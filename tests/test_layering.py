# Layering rules, checked on the source with `ast` (no imports executed):
# the sans-IO protocol layer (mysqlpool_proxy/protocol/) imports no I/O module
# (asyncio, socket, ssl, selectors, aiomysql, uvloop) and, from the parent
# package, only `errors` and `constants` (which must themselves stay I/O-free);
# private APIs of dependencies are touched in exactly one place each:
# `pymysql._auth` in protocol/auth.py, aiomysql's `._reader` / `._writer` in
# backend/adapter.py.
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mysqlpool_proxy"
PROTOCOL = PACKAGE / "protocol"

FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "aiomysql", "uvloop"}
ALLOWED_FROM_PARENT = {"errors", "constants"}
KNOWN_PROTOCOL_MODULES = {"wire", "framing", "packets", "session_track", "auth", "handshake", "response",
                          "command", "sql"}


def protocol_files() -> list[Path]:
    return sorted(PROTOCOL.glob("*.py"))


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: Path) -> str:
    try:
        return path.relative_to(PACKAGE.parent).as_posix()
    except ValueError:
        return path.as_posix()


def imports(path: Path):
    """(lineno, absolute-or-relative module name, level, imported names) for every import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, 0, ()
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", node.level, tuple(a.name for a in node.names)


def dynamic_imports(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in ("__import__", "import_module"):
                lines.append(node.lineno)
    return lines


def top(name: str) -> str:
    return name.split(".", 1)[0]


def violations_in_protocol(path: Path) -> list[str]:
    out = []
    for lineno, module, level, names in imports(path):
        where = f"{rel(path)}:{lineno}"
        if level == 0:
            if top(module) in FORBIDDEN:
                out.append(f"{where}: imports {module}")
            elif top(module) == "mysqlpool_proxy":
                parts = module.split(".")
                if len(parts) == 1:
                    reached = set(names)
                elif parts[1] == "protocol":
                    continue
                else:
                    reached = {parts[1]}
                for mod in reached - ALLOWED_FROM_PARENT:
                    out.append(f"{where}: imports mysqlpool_proxy.{mod} (only errors/constants allowed)")
            elif module in ("importlib",):
                out.append(f"{where}: imports importlib")
        elif level == 1:
            continue  # inside protocol/
        elif level == 2:
            reached = {top(module)} if module else set(names)
            for mod in reached - ALLOWED_FROM_PARENT:
                out.append(f"{where}: imports ..{mod} (only ..errors and ..constants allowed)")
        else:
            out.append(f"{where}: relative import of level {level} reaches outside the package")
    for lineno in dynamic_imports(path):
        out.append(f"{rel(path)}:{lineno}: dynamic import")
    return out


def test_protocol_modules_found():
    names = {p.stem for p in protocol_files()}
    assert KNOWN_PROTOCOL_MODULES <= names


@pytest.mark.parametrize("path", protocol_files(), ids=lambda p: p.name)
def test_protocol_module_does_no_io_imports(path):
    assert violations_in_protocol(path) == []


@pytest.mark.parametrize("name", sorted(ALLOWED_FROM_PARENT))
def test_parent_modules_allowed_to_protocol_stay_io_free(name):
    """What protocol/ may import from the parent must not pull I/O in behind its back."""
    path = PACKAGE / f"{name}.py"
    bad = []
    for lineno, module, level, names in imports(path):
        if level == 0 and top(module) in FORBIDDEN:
            bad.append(f"{lineno}: {module}")
        elif level == 0 and top(module) == "mysqlpool_proxy":
            mod = module.split(".")[1] if "." in module else None
            if mod not in ALLOWED_FROM_PARENT:
                bad.append(f"{lineno}: {module}")
        elif level == 1:
            reached = {top(module)} if module else set(names)
            bad += [f"{lineno}: .{m}" for m in reached - ALLOWED_FROM_PARENT]
        elif level > 1:
            bad.append(f"{lineno}: relative import of level {level}")
    assert bad == []


# -- the checker itself ----------------------------------------------------------------------------


@pytest.mark.parametrize("source,ok", [
    ("import asyncio", False),
    ("import asyncio.events", False),
    ("from socket import socket", False),
    ("import ssl as _ssl", False),
    ("from selectors import DefaultSelector", False),
    ("import aiomysql", False),
    ("import uvloop", False),
    ("def f():\n    import socket", False),
    ("from ..errors import RemoteProtocolError", True),
    ("from ..constants import CLIENT", True),
    ("from .. import errors, constants", True),
    ("from .. import backend", False),
    ("from ..backend import Backend", False),
    ("from ..client import ClientConnection", False),
    ("from ...x import y", False),
    ("from .wire import Reader", True),
    ("from . import auth", True),
    ("from mysqlpool_proxy.errors import ProtocolError", True),
    ("from mysqlpool_proxy.protocol.wire import Reader", True),
    ("from mysqlpool_proxy.proxy import Proxy", False),
    ("from mysqlpool_proxy import backend_adapter", False),
    ("import importlib\nimportlib.import_module('socket')", False),
    ("__import__('socket')", False),
    ("import hashlib, hmac, struct, re, enum, secrets", True),
])
def test_checker(tmp_path, source, ok):
    path = tmp_path / "mod.py"
    path.write_text(source + "\n")
    assert (violations_in_protocol(path) == []) is ok


# -- private APIs of dependencies ---------------------------------------------------------------------

PYMYSQL_AUTH_TEXT = re.compile(r"\bpymysql\s*\.\s*_auth\b|\bfrom\s+pymysql\s+import\s+[^\n]*\b_auth\b")


def touches_pymysql_auth(path: Path) -> bool:
    for _, module, level, names in imports(path):
        if level == 0 and (module == "pymysql._auth" or module.startswith("pymysql._auth.")):
            return True
        if level == 0 and module == "pymysql" and "_auth" in names:
            return True
    return bool(PYMYSQL_AUTH_TEXT.search(_code_only(path)))


AIOMYSQL_PRIVATE = {"_reader", "_writer"}


def touches_aiomysql_stream_internals(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in AIOMYSQL_PRIVATE:
            lines.append(node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in AIOMYSQL_PRIVATE):
            lines.append(node.lineno)
    return lines


def _code_only(path: Path) -> str:
    """The source with comments and string literals blanked (docstrings may name private APIs)."""
    import io
    import tokenize

    out = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            continue
        out.append(tok.string)
    return " ".join(out)


def test_pymysql_private_auth_only_in_protocol_auth():
    touching = {rel(p) for p in package_files() if touches_pymysql_auth(p)}
    assert touching <= {"mysqlpool_proxy/protocol/auth.py"}, touching


def test_aiomysql_stream_internals_only_in_backend_adapter():
    touching = {rel(p): lines for p in package_files() if (lines := touches_aiomysql_stream_internals(p))}
    assert set(touching) <= {"mysqlpool_proxy/backend/adapter.py"}, touching


def test_private_api_checkers_see_what_is_there():
    # Guard against checkers that would pass vacuously.
    assert touches_pymysql_auth(PROTOCOL / "auth.py")
    assert touches_aiomysql_stream_internals(PACKAGE / "backend" / "adapter.py")
