# docs/architecture.md must stay true as the code moves. Checked on the source
# with `ast` (only the state tables and the reason enums are imported):
#   * every `Name.function()`, `module.function()` and `function()` it names is
#     defined in the package (a class or module of that name defines it), so a
#     rename or a removal shows up here, while moving a class to another file
#     does not matter;
#   * its client and backend state diagrams are core/states.py's tables, edge
#     for edge (the moves to CLOSED, which every state has, are not drawn);
#   * the states of its pool diagram are collections the Pool keeps;
#   * it lists every close and refusal reason; the README links to it.
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

from mysqlpool_proxy import reasons
from mysqlpool_proxy.core import states

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mysqlpool_proxy"
DOC = (ROOT / "docs" / "architecture.md").read_text()

REFERENCE = re.compile(r"`((?:[A-Za-z_]\w*\.)?([A-Za-z_]\w*))\(\)`")
EDGE = re.compile(r"^\s*(\[\*\]|\w+)\s*-->\s*(\[\*\]|\w+)", re.MULTILINE)
START = "[*]"


class Definitions:
    """What the package defines: methods by class name, top-level names by module name, every function name."""

    def __init__(self) -> None:
        self.methods: dict[str, set[str]] = defaultdict(set)
        self.module_names: dict[str, set[str]] = defaultdict(set)
        self.functions: set[str] = set()
        self.init_attributes: dict[str, set[str]] = defaultdict(set)  # class -> self.X set in __init__
        for path in PACKAGE.rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            module = path.parent.name if path.stem == "__init__" else path.stem
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    self.module_names[module].add(node.name)
            for each in ast.walk(tree):
                if isinstance(each, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.functions.add(each.name)
                elif isinstance(each, ast.ClassDef):
                    self._read_class(each)

    def _read_class(self, cls: ast.ClassDef) -> None:
        for item in cls.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.methods[cls.name].add(item.name)
                if item.name == "__init__":
                    for node in ast.walk(item):
                        targets = node.targets if isinstance(node, ast.Assign) else \
                            [node.target] if isinstance(node, ast.AnnAssign) else []
                        self.init_attributes[cls.name].update(
                            t.attr for t in targets
                            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self")

    def missing(self, reference: str) -> str | None:
        """Why `reference` (`A.f`, `module.f` or `f`) names nothing in the package; None if it names something."""
        owner, _, name = reference.rpartition(".")
        if not owner:
            return None if name in self.functions else "no such function"
        if owner in self.methods:
            return None if name in self.methods[owner] else f"class {owner} has no {name}()"
        if owner in self.module_names:
            return None if name in self.module_names[owner] else f"module {owner} has no {name}()"
        return f"no class or module named {owner}"


DEFINITIONS = Definitions()


def references() -> list[str]:
    return sorted({m[1] for m in REFERENCE.finditer(DOC) if not m[2].isupper()})  # not SQL: LAST_INSERT_ID()


def diagram(marker: str) -> list[tuple[str, str]]:
    """The edges of the mermaid block carrying the comment `%% <marker>`."""
    blocks = re.findall(r"```mermaid\n(.*?)```", DOC, re.DOTALL)
    found = [b for b in blocks if re.search(rf"^\s*%% {re.escape(marker)}\s*$", b, re.MULTILINE)]
    assert len(found) == 1, f"docs/architecture.md should have one diagram marked '%% {marker}'"
    return EDGE.findall(found[0])


def test_the_doc_names_functions():
    assert len(references()) > 50  # the checker reads what the doc writes


@pytest.mark.parametrize("reference", references())
def test_every_function_the_doc_names_exists(reference):
    assert DEFINITIONS.missing(reference) is None, f"docs/architecture.md names `{reference}()`: " \
        f"{DEFINITIONS.missing(reference)}"


def test_the_checker_tells_missing_names():
    assert DEFINITIONS.missing("Pool.release") is None and DEFINITIONS.missing("checkout.start") is None
    assert DEFINITIONS.missing("Pool.no_such_method") and DEFINITIONS.missing("checkout.no_such")
    assert DEFINITIONS.missing("NoSuchClass.release") and DEFINITIONS.missing("no_such_function")


@pytest.mark.parametrize("table", ["CLIENT_MOVES", "BACKEND_MOVES"])
def test_state_diagrams_are_the_transition_tables(table):
    moves = getattr(states, table)
    closed = next(s for s in moves if s.name == "CLOSED")
    # What the doc says instead of drawing them: every state may close, and nothing leaves CLOSED.
    assert all(closed in row for state, row in moves.items() if state is not closed)
    assert moves[closed] == ()
    expected = {(a.name, b.name) for a, row in moves.items() for b in row if b is not closed}
    edges = diagram(f"table: {table}")
    drawn = {(a, b) for a, b in edges if START not in (a, b)}
    assert drawn == expected
    named = {s for edge in edges for s in edge} - {START}
    assert named <= {s.name for s in moves}


def test_pool_diagram_states_are_the_pools_collections():
    edges = diagram("collections: Pool")
    named = {s for edge in edges for s in edge} - {START}
    assert named and named <= DEFINITIONS.init_attributes["Pool"], named - DEFINITIONS.init_attributes["Pool"]


@pytest.mark.parametrize("enum", [reasons.BackendCloseReason, reasons.ClientCloseReason, reasons.RefusalReason],
                         ids=lambda e: e.__name__)
def test_every_reason_is_in_the_doc(enum):
    assert [r.value for r in enum if f"`{r.value}`" not in DOC] == []


def test_the_readme_links_to_the_doc():
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()
