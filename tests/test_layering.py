# Layering rules, checked on the source with `ast` (no imports executed).
#
# The sans-IO protocol layer (mysqlpool_proxy/protocol/) imports no I/O module
# (asyncio, socket, ssl, selectors, aiomysql, uvloop) and, from the parent
# package, only `errors` and `constants` (which must themselves stay I/O-free);
# private APIs of dependencies are touched in exactly one place each:
# `pymysql._auth` in protocol/auth.py, aiomysql's `._reader` / `._writer` in
# backend/adapter.py.
#
# For every module of the package (second half of this file), each rule
# failing names file:line and the rule:
#   layers   a module imports only from its own rank or lower ones (RANKS below),
#            counting every import: top-level, under `if TYPE_CHECKING:`, and
#            inside functions; no import cycles between modules (Tarjan's SCC
#            over the graph of all those imports); an annotation names nothing
#            that the module neither defines nor imports (under `from __future__
#            import annotations` such a name is a dependency no import shows);
#   no-io    protocol/ and core/, and every package module they import (all the
#            way down), import no I/O module;
#   deps     aiomysql only in backend/adapter.py (and its public API in
#            ops/peers.py, the client of the other workers' consoles);
#            prometheus_client only in ops/metrics.py, ops/http.py (which
#            serves the exposition format: `choose_encoder` picks it from the
#            request's Accept) and ops/peers.py (which merges the workers');
#   mixins   no class named *Mixin, no class with more than one base that is a
#            non-Protocol class of the package;
#   private  no `x._name` (nor getattr/setattr/hasattr/delattr of "_name") where
#            x is not `self`/`cls`; dunders are public, so are namedtuple's
#            `_replace`/`_asdict`/`_fields`/`_make` and `os._exit`; the one
#            exception is backend/adapter.py, which takes the transport over
#            from aiomysql (`Connection._reader`/`._writer`), reads what is
#            left in the asyncio StreamReader it used (`._buffer`), and opens
#            its own subclass of aiomysql's Connection (`._connect` and the
#            three methods it overrides, to negotiate MariaDB's capabilities);
#   link     only client/lease.py writes the client<->backend link: the lease's
#            `backend` (and `last_backend`) and the backend's `holder`. One
#            exception, by design: a backend that dies clears its own `holder`
#            (to None, in BackendConnection._lost, besides declaring it None in
#            __init__), because a dead backend must stop talking to its client
#            at once, whatever the client is doing (it may be gone, or be in the
#            middle of taking another backend), before it tells the client
#            (`on_backend_lost`); the lease's `lost()` then forgets it on the
#            client's side;
#   pool     a backend changes collection (`idle`, `busy`, `pinging`, `closing`)
#            only in Places.move (backend/places.py, the pool's collections):
#            every pool size is the length of a collection.
from __future__ import annotations

import ast
import builtins
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
                out.extend(f"{where}: imports mysqlpool_proxy.{mod} (only errors/constants allowed)"
                           for mod in reached - ALLOWED_FROM_PARENT)
            elif module in ("importlib",):
                out.append(f"{where}: imports importlib")
        elif level == 1:
            continue  # inside protocol/
        elif level == 2:
            reached = {top(module)} if module else set(names)
            out.extend(f"{where}: imports ..{mod} (only ..errors and ..constants allowed)"
                       for mod in reached - ALLOWED_FROM_PARENT)
        else:
            out.append(f"{where}: relative import of level {level} reaches outside the package")
    out.extend(f"{rel(path)}:{lineno}: dynamic import" for lineno in dynamic_imports(path))
    return out


def test_protocol_modules_found():
    names = {p.stem for p in protocol_files()}
    assert names >= KNOWN_PROTOCOL_MODULES


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
    return [node.lineno for node in ast.walk(tree)
            if (isinstance(node, ast.Attribute) and node.attr in AIOMYSQL_PRIVATE)
            or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant) and node.args[1].value in AIOMYSQL_PRIVATE)]


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


# == every module of the package ====================================================================

# The layers, lowest first: a module may import its own rank and lower ones. Top-level modules get a
# rank of their own choosing, said here:
# * base: `mysqlpool_proxy` itself (only __version__), constants, errors, reasons, logs, events (the
#   ring of recent events backend/ and proxy/ record into and ops/ shows): vocabulary every layer uses
#   (errors imports constants; nothing here imports anything else of the package);
# * settings: config (the schema and loader), workers (the supervisor and `share()` of caps) and
#   startup (bind and host checks): they import only config and logs, and proxy/ and ops/ use them
#   (`share`, `WorkerSlot`, `listener_errors`), so they sit below everything that runs, as in
#   docs/architecture.md section 1 (protocol/ still may not use them: it imports only errors and
#   constants; nor may core/: config imports ssl, and the I/O ban follows imports);
# * top: app, cli, __main__: they start everything.
RANKS: list[tuple[str, set[str]]] = [
    ("base", {"mysqlpool_proxy", "constants", "errors", "reasons", "logs", "events"}),
    ("settings", {"config", "workers", "startup"}),
    ("protocol", {"protocol"}),
    ("core", {"core"}),
    ("backend", {"backend"}),
    ("client", {"client"}),
    ("proxy", {"proxy"}),
    ("ops", {"ops"}),
    ("top", {"app", "cli", "__main__"}),
]
IO_MODULES = FORBIDDEN
IO_FREE_LAYERS = {"protocol", "core"}
ONLY_IMPORTED_BY = {
    "aiomysql": {"mysqlpool_proxy/backend/adapter.py", "mysqlpool_proxy/ops/peers.py"},
    "prometheus_client": {"mysqlpool_proxy/ops/metrics.py", "mysqlpool_proxy/ops/http.py",
                          "mysqlpool_proxy/ops/peers.py"},
}
PUBLIC_UNDERSCORED = {"_replace", "_asdict", "_fields", "_make", "_exit"}  # namedtuple's API; os._exit
# backend/adapter.py takes aiomysql's transport over (`_reader`, `_writer`, the StreamReader's `_buffer`),
# and its MariaDBConnection (aiomysql's Connection, to negotiate MariaDB's extended capabilities) opens
# with `_connect`, as aiomysql.connect() does, and calls the three methods it overrides.
PRIVATE_ALLOWED = {"mysqlpool_proxy/backend/adapter.py": {"_reader", "_writer", "_buffer", "_connect", "_read_packet",
                                                          "_get_server_information", "_request_authentication"}}
LINK_WRITER = "mysqlpool_proxy/client/lease.py"
LINK_ATTRIBUTES = {"backend", "last_backend", "holder"}
POOL_COLLECTIONS = {"idle", "busy", "pinging", "closing"}
MUTATORS = {"add", "append", "appendleft", "clear", "discard", "extend", "insert", "pop", "popleft", "remove",
            "update", "difference_update", "intersection_update", "symmetric_difference_update", "sort", "reverse"}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    first = module.split(".")[1] if "." in module else module
    for name, members in RANKS:
        if first in members:
            return name
    raise AssertionError(f"{module}: in no layer of RANKS; give it a rank")


def rank_of(module: str) -> int:
    return [name for name, _ in RANKS].index(layer_of(module))


def package_modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def internal_imports(path: Path, modules: dict[str, Path], root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(lineno, module) for every import of a package module, wherever it is (top level, under
    TYPE_CHECKING, in a function); `from package import name` counts as the module `name` if it is one."""
    me = module_name(path, root)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    out = []
    for lineno, module, level, names in imports(path):
        if level:
            base = ".".join(package[:len(package) - (level - 1)] + ([module] if module else []))
        elif top(module) == root.name:
            base = module
        else:
            continue
        targets = [f"{base}.{n}" if f"{base}.{n}" in modules else base for n in names] if names else [base]
        for target in targets:
            while target not in modules and target.count(".") > 1:
                target = target.rsplit(".", 1)[0]
            if target != me:  # (one that does not exist still has a rank: its folder's)
                out.append((lineno, target))
    return out


def import_graph(root: Path = PACKAGE) -> dict[str, list[tuple[int, str]]]:
    modules = package_modules(root)
    return {name: internal_imports(path, modules, root) for name, path in modules.items()}


def strongly_connected(graph: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one module (each one is an import cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for _, w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_violations(root: Path = PACKAGE) -> list[str]:
    modules = package_modules(root)
    out = []
    for name, edges in import_graph(root).items():
        where = rel(modules[name]) if root == PACKAGE else modules[name].name
        for lineno, target in edges:
            if rank_of(target) > rank_of(name):
                out.append(f"{where}:{lineno}: [layers] {layer_of(name)} module imports {target} "
                           f"({layer_of(target)}, a higher layer): declare a Protocol it satisfies instead")
    return out


def cycle_violations(root: Path = PACKAGE) -> list[str]:
    graph = import_graph(root)
    modules = package_modules(root)
    out = []
    for component in strongly_connected(graph):
        members = set(component)
        edges = [f"{rel(modules[m]) if root == PACKAGE else modules[m].name}:{lineno} -> {target}"
                 for m in component for lineno, target in graph[m] if target in members]
        out.append(f"[layers] import cycle among {', '.join(component)}: " + "; ".join(edges))
    return out


def _module_bindings(tree: ast.Module) -> set[str]:
    """Every name the module binds anywhere (imports, defs, classes, assignments), and the builtins."""
    names = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _annotations(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if a is not None and a.annotation is not None:
                    yield a.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _names_in(annotation: ast.expr):
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                inner = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                continue
            for sub in ast.walk(inner):
                if isinstance(sub, ast.Name):
                    yield node.lineno, sub.id


def unbound_annotation_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    bound = _module_bindings(tree)
    return [f"{rel(path)}:{lineno}: [layers] annotation names {name!r}, neither defined nor imported here"
            for annotation in _annotations(tree) for lineno, name in _names_in(annotation) if name not in bound]


def io_violations(root: Path = PACKAGE) -> list[str]:
    """protocol/ and core/, and whatever package module they import, all the way down: no I/O module."""
    modules = package_modules(root)
    graph = import_graph(root)
    out = []
    for name in sorted(modules):
        if layer_of(name) not in IO_FREE_LAYERS:
            continue
        seen, todo = {name}, [name]
        while todo:
            current = todo.pop()
            for lineno, module, level, _ in imports(modules[current]):
                if level == 0 and top(module) in IO_MODULES:
                    via = "" if current == name else f" (imported by {name})"
                    where = rel(modules[current]) if root == PACKAGE else modules[current].name
                    out.append(f"{where}:{lineno}: [no-io] imports {module}{via}: "
                               f"{'/'.join(sorted(IO_FREE_LAYERS))} do no I/O")
            for _, target in graph[current]:
                if target in modules and target not in seen:
                    seen.add(target)
                    todo.append(target)
    return sorted(set(out))


def dependency_violations(path: Path) -> list[str]:
    out = []
    for lineno, module, level, _ in imports(path):
        allowed = ONLY_IMPORTED_BY.get(top(module)) if level == 0 else None
        if allowed is not None and rel(path) not in allowed:
            out.append(f"{rel(path)}:{lineno}: [deps] imports {module}: only {', '.join(sorted(allowed))} may")
    return out


def _package_classes() -> dict[str, bool]:
    """Every class the package defines, by name: is it a typing.Protocol?"""
    classes: dict[str, bool] = {}
    for path in package_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                classes[node.name] = bool(bases & {"Protocol", "typing.Protocol"}) or any(
                    b.startswith(("Protocol[", "typing.Protocol[")) for b in bases)
    return classes


def mixin_violations(path: Path, classes: dict[str, bool]) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.ClassDef):
            continue
        where = f"{rel(path)}:{node.lineno}"
        if node.name.endswith("Mixin"):
            out.append(f"{where}: [mixins] class {node.name}: no mixins; compose a part that owns its state")
        ours = [ast.unparse(b) for b in node.bases
                if (b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else None)
                in classes and not classes[b.id if isinstance(b, ast.Name) else b.attr]]
        if len(ours) > 1:
            out.append(f"{where}: [mixins] class {node.name} inherits from {', '.join(ours)}: at most one base "
                       "of the package (Protocols aside)")
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) \
        and name not in PUBLIC_UNDERSCORED


def private_violations(path: Path) -> list[str]:
    allowed = PRIVATE_ALLOWED.get(rel(path), set())
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in allowed:
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            out.append(f"{rel(path)}:{node.lineno}: [private] {ast.unparse(node)}: another object's private "
                       "attribute; ask its owner")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _is_private(node.args[1].value) and node.args[1].value not in allowed
              and not (isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls"))):
            out.append(f"{rel(path)}:{node.lineno}: [private] {ast.unparse(node)}: another object's private "
                       "attribute; ask its owner")
    return out


def _written(node: ast.AST):
    """(target, value or None) for each attribute an assignment or del writes."""
    if isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, (ast.Tuple, ast.List)):
                values = node.value.elts if isinstance(node.value, (ast.Tuple, ast.List)) else [None] * len(target.elts)
                yield from zip(target.elts, values)
            else:
                yield target, node.value
    elif isinstance(node, ast.AnnAssign):
        yield node.target, node.value
    elif isinstance(node, ast.AugAssign):
        yield node.target, None
    elif isinstance(node, ast.Delete):
        for target in node.targets:
            yield target, None
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr")
          and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)):
        yield ast.Attribute(value=node.args[0], attr=node.args[1].value, lineno=node.lineno), \
            node.args[2] if len(node.args) > 2 else None


def _scopes(tree: ast.Module):
    """(node, class name, function name) for every node, with its innermost enclosing class and function."""
    def walk(node, cls, fn):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                yield child, cls, fn
                yield from walk(child, child.name, None)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield child, cls, fn
                yield from walk(child, cls, child.name)
            else:
                yield child, cls, fn
                yield from walk(child, cls, fn)
    yield from walk(tree, None, None)


def link_violations(path: Path) -> list[str]:
    if rel(path) == LINK_WRITER:
        return []
    out = []
    for node, cls, fn in _scopes(ast.parse(path.read_text(), filename=str(path))):
        for target, value in _written(node):
            if not (isinstance(target, ast.Attribute) and target.attr in LINK_ATTRIBUTES):
                continue
            own_holder_dropped = (
                target.attr == "holder" and isinstance(target.value, ast.Name) and target.value.id == "self"
                and (cls, fn) in {("BackendConnection", "__init__"), ("BackendConnection", "_lost")}
                and isinstance(value, ast.Constant) and value.value is None)
            if not own_holder_dropped:
                out.append(f"{rel(path)}:{target.lineno}: [link] writes {ast.unparse(target)}: only "
                           "client/lease.py links or unlinks a client and a backend")
    return out


def pool_collection_violations(path: Path) -> list[str]:
    out = []
    for node, cls, fn in _scopes(ast.parse(path.read_text(), filename=str(path))):
        if (cls, fn) == ("Places", "move"):
            continue
        attr = None
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr in POOL_COLLECTIONS):
            attr = node.func.value
        for target, _ in _written(node):
            # `del pool.idle[i]`, `pool.busy |= ...` anywhere; a whole collection replaced in Pool or Places
            # (elsewhere `x.busy = ...` is some other object's flag, such as a server statement's).
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute) \
                    and target.value.attr in POOL_COLLECTIONS:
                attr = target.value
            elif isinstance(target, ast.Attribute) and target.attr in POOL_COLLECTIONS \
                    and (isinstance(node, ast.AugAssign) or (cls in ("Pool", "Places") and fn != "__init__")):
                attr = target
        if attr is not None:
            out.append(f"{rel(path)}:{node.lineno}: [pool] changes {ast.unparse(attr)}: a backend changes "
                       "collection only in Places.move")
    return out


def assert_none(violations: list[str]) -> None:
    """Fail with every violation on its own line (file:line: [rule] what)."""
    assert not violations, "\n" + "\n".join(violations)


def test_every_module_has_a_rank():
    for name in package_modules():
        layer_of(name)


def test_imports_go_down_the_layers():
    assert_none(layer_violations())


def test_no_import_cycles():
    assert_none(cycle_violations())


@pytest.mark.parametrize("path", package_files(), ids=rel)
def test_annotations_name_only_what_the_module_imports(path):
    assert_none(unbound_annotation_names(path))


def test_protocol_and_core_do_no_io():
    assert_none(io_violations())


@pytest.mark.parametrize("path", package_files(), ids=rel)
def test_dependencies_imported_where_allowed(path):
    assert_none(dependency_violations(path))


def test_no_mixins():
    classes = _package_classes()
    assert_none([v for p in package_files() for v in mixin_violations(p, classes)])


@pytest.mark.parametrize("path", package_files(), ids=rel)
def test_no_reaching_into_private_attributes(path):
    assert_none(private_violations(path))


def test_only_the_lease_writes_the_client_backend_link():
    assert_none([v for p in package_files() for v in link_violations(p)])


def test_pool_collections_change_only_in_move():
    assert_none([v for p in package_files() for v in pool_collection_violations(p)])


def test_package_checkers_see_what_is_there():
    # Guard against checkers that would pass vacuously.
    graph = import_graph()
    assert ("mysqlpool_proxy.backend.pool" in {t for _, t in graph["mysqlpool_proxy.client.lease"]})
    assert len(graph) == len(package_files())
    lease = (PACKAGE / "client" / "lease.py").read_text()
    assert "backend.holder = " in lease and "self.backend = " in lease
    assert any("_reader" in ast.unparse(n) for n in ast.walk(ast.parse((PACKAGE / "backend/adapter.py").read_text()))
               if isinstance(n, ast.Attribute))
    assert "def move(" in (PACKAGE / "backend" / "places.py").read_text()
    assert "self.places.move(" in (PACKAGE / "backend" / "pool.py").read_text()


# -- the package checkers themselves, on made-up modules -------------------------------------------


def make_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "mysqlpool_proxy"
    stubs = {"__init__.py": "", "config.py": "import ssl\n", "startup.py": "", "backend/pool.py": "",
             "core/other.py": "", "client/x.py": "", "client/y.py": "", "app.py": ""}
    for name, source in {**stubs, **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source + "\n")
    return root


TC = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    "


@pytest.mark.parametrize("files,found", [
    ({"core/a.py": "from ..backend.pool import Pool"}, "[layers] core module imports mysqlpool_proxy.backend.pool"),
    ({"core/a.py": TC + "from ..backend.pool import Pool"}, "[layers] core module imports"),
    ({"core/a.py": "def f():\n    import mysqlpool_proxy.backend.pool"}, "[layers] core module imports"),
    ({"core/a.py": "from mysqlpool_proxy.client import x"}, "[layers] core module imports mysqlpool_proxy.client.x"),
    ({"core/a.py": "from ..backend import gone"}, "[layers] core module imports mysqlpool_proxy.backend"),
    ({"ops/o.py": "from .. import app"}, "[layers] ops module imports mysqlpool_proxy.app"),
    ({"backend/b.py": "from ..core import other\nfrom .. import config\nfrom . import pool"}, None),
    ({"proxy/p.py": "from ..startup import x\nfrom ..client.x import X"}, None),
])
def test_layer_checker(tmp_path, files, found):
    violations = layer_violations(make_package(tmp_path, files))
    assert (violations == []) if found is None else any(found in v for v in violations), violations


@pytest.mark.parametrize("files,cycles", [
    ({"client/x.py": "from . import y", "client/y.py": TC + "from .x import X"}, 1),
    ({"client/x.py": "from . import y", "client/y.py": "def f():\n    from mysqlpool_proxy.client import x"}, 1),
    ({"core/a.py": "from . import b", "core/b.py": "from . import c", "core/c.py": "from . import a",
      "client/x.py": "from . import y", "client/y.py": "from .x import X"}, 2),
    ({"client/x.py": "from . import y", "client/y.py": "from ..core import other"}, 0),
])
def test_cycle_checker(tmp_path, files, cycles):
    assert len(cycle_violations(make_package(tmp_path, files))) == cycles


@pytest.mark.parametrize("files,found", [
    ({"core/a.py": "def f():\n    import asyncio"}, "a.py:2: [no-io] imports asyncio"),
    ({"core/a.py": TC + "import socket"}, "[no-io] imports socket"),
    ({"core/a.py": "from .. import config"}, "config.py:1: [no-io] imports ssl (imported by mysqlpool_proxy.core.a)"),
    ({"protocol/w.py": "from ..core import a", "core/a.py": "import selectors"}, "[no-io] imports selectors"),
    ({"core/a.py": "import enum\nfrom . import other"}, None),
    ({"backend/b.py": "import asyncio\nimport aiomysql"}, None),
])
def test_io_checker(tmp_path, files, found):
    violations = io_violations(make_package(tmp_path, files))
    assert (violations == []) if found is None else any(found in v for v in violations), violations


@pytest.mark.parametrize("source,ok", [
    ("def f(pool: Pool) -> None: ...", False),
    ("def f() -> 'Pool': ...", False),
    ("x: list[Pool] = []", False),
    (TC + "from .pool import Pool\ndef f(pool: Pool) -> None: ...", True),
    ("class Pool: ...\ndef f(pool: Pool, n: int) -> list[Pool]: ...", True),
])
def test_annotation_checker(tmp_path, source, ok):
    path = tmp_path / "mod.py"
    path.write_text(source + "\n")
    assert (unbound_annotation_names(path) == []) is ok


@pytest.mark.parametrize("source,ok", [
    ("import aiomysql", False),
    ("def f():\n    from aiomysql import connect", False),
    ("from prometheus_client.core import GaugeMetricFamily", False),
    (TC + "from prometheus_client.registry import CollectorRegistry", False),
    ("import pymysql\nimport asyncio", True),
])
def test_dependency_checker(tmp_path, source, ok):
    path = tmp_path / "mod.py"
    path.write_text(source + "\n")
    assert (dependency_violations(path) == []) is ok


@pytest.mark.parametrize("source,ok", [
    ("class StatsMixin:\n    pass", False),
    ("class A(B, C):\n    pass", False),
    ("class A(B, mod.C):\n    pass", False),
    ("class A(B, P):\n    pass", True),
    ("class A(B, Exception):\n    pass", True),
    ("class A(asyncio.Protocol):\n    pass", True),
])
def test_mixin_checker(tmp_path, source, ok):
    path = tmp_path / "mod.py"
    path.write_text(source + "\n")
    assert (mixin_violations(path, {"B": False, "C": False, "P": True}) == []) is ok


@pytest.mark.parametrize("source,ok", [
    ("other._task", False),
    ("self.client._task", False),
    ("client.lease._holder", False),
    ("getattr(client, '_task')", False),
    ("setattr(client, '_task', None)", False),
    ("conn._reader", False),
    ("self._task\ncls._registry", True),
    ("x.__class__\nx.__dict__", True),
    ("s._replace(labels={})\nrow._asdict()\nos._exit(1)", True),
    ("getattr(client, 'state')", True),
])
def test_private_checker(tmp_path, source, ok):
    path = tmp_path / "mod.py"
    path.write_text(source + "\n")
    assert (private_violations(path) == []) is ok


@pytest.mark.parametrize("source,ok", [
    ("client.lease.backend = backend", False),
    ("backend.holder = client", False),
    ("backend.holder = None", False),
    ("client.backend, x = b, 1", False),
    ("self.last_backend = None", False),
    ("del backend.holder", False),
    ("setattr(backend, 'holder', client)", False),
    ("class BackendConnection:\n    def _lost(self):\n        self.holder = client", False),
    ("class BackendConnection:\n    def release(self):\n        self.holder = None", False),
    ("class Other:\n    def _lost(self):\n        self.holder = None", False),
    ("class BackendConnection:\n    def _lost(self):\n        client, self.holder = self.holder, None", True),
    ("class BackendConnection:\n    def __init__(self):\n        self.holder: Holder | None = None", True),
    ("backend = client.backend\nholder = backend.holder", True),
])
def test_link_checker(tmp_path, source, ok):
    path = tmp_path / "mod.py"
    path.write_text(source + "\n")
    assert (link_violations(path) == []) is ok


@pytest.mark.parametrize("source,ok", [
    ("class Pool:\n    def ping(self, b):\n        self.pinging.add(b)", False),
    ("class Pool:\n    def drop(self):\n        del self.idle[0]", False),
    ("class Pool:\n    def drop(self):\n        self.busy = set()", False),
    ("pool.closing.discard(b)", False),
    ("pool.idle.append(b)", False),
    ("class Places:\n    def move(self, b):\n        self.busy.add(b)\n        del self.idle[0]", True),
    ("class Pool:\n    def _move(self, b):\n        self.busy.add(b)", False),
    ("class Places:\n    def drop(self):\n        self.busy = set()", False),
    ("class Places:\n    def __init__(self):\n        self.idle = []\n        self.pinging = set()", True),
    ("class Pool:\n    def __init__(self):\n        self.idle = []\n        self.pinging = set()", True),
    ("server.busy = True\nn = len(pool.idle)", True),
])
def test_pool_collection_checker(tmp_path, source, ok):
    path = tmp_path / "mod.py"
    path.write_text(source + "\n")
    assert (pool_collection_violations(path) == []) is ok
