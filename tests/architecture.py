"""The module map of docs/architecture.md, read back so that a test can hold the code to it.

The doc's "Layers" table names every module of `registrations/`; a module may import only
modules of its own layer or of layers above it in the table (lower numbers), and modules of
one layer never import each other in a cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "registrations"
DOC = ROOT / "docs" / "architecture.md"
# A table row: | 3 | remote services | `coder`, `sms_transport` | ...
_ROW = re.compile(r"^\|\s*(\d+)\s*\|[^|]*\|([^|]*)\|", re.MULTILINE)
_NAME = re.compile(r"`([a-z_.*]+)`")


def package_modules() -> list[Path]:
    """Every module of the app, migrations left out (they are history, not structure)."""
    return sorted(
        p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts and p.name != "__init__.py"
    )


def existing_names() -> set[str]:
    """Every module and package of the app, by dotted name (`deletion`, `admin`, `admin.roster`)."""
    packages = {
        module_name(p.parent)
        for p in PACKAGE.rglob("__init__.py")
        if p.parent != PACKAGE and "migrations" not in p.parts
    }
    return {module_name(p) for p in package_modules()} | packages


def module_name(path: Path) -> str:
    """`registrations/admin/roster.py` -> `admin.roster` (a package folder -> `admin`)."""
    relative = path.relative_to(PACKAGE)
    return ".".join(relative.with_suffix("").parts if path.suffix else relative.parts)


def layers() -> dict[str, int]:
    """Module name (or `package.*`) -> layer number, as the doc's table says."""
    found: dict[str, int] = {}
    for number, cell in _ROW.findall(DOC.read_text()):
        for name in _NAME.findall(cell):
            found[name] = int(number)
    return found


def layer_of(module: str, table: dict[str, int]) -> int | None:
    if module in table:
        return table[module]
    parts = module.split(".")
    for i in range(len(parts) - 1, 0, -1):
        wildcard = ".".join(parts[:i]) + ".*"
        if wildcard in table:
            return table[wildcard]
    return None


def imports_of(path: Path) -> set[str]:
    """The app modules a file imports, function-local imports included."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "registrations":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("registrations."):
                found.add(node.module.removeprefix("registrations."))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("registrations."):
                    found.add(alias.name.removeprefix("registrations."))
    existing = existing_names()
    return {name for name in found if name in existing or name.split(".")[0] in existing}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (imports for type hints only)."""
    nodes: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        nodes.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in package_modules()}


def wrong_way_imports() -> list[str]:
    """Each import from a lower layer (a larger number) than the importer's, and each cycle."""
    table = layers()
    edges = graph()
    wrong = []
    for module, targets in sorted(edges.items()):
        mine = layer_of(module, table)
        for target in sorted(targets):
            theirs = layer_of(target, table)
            if mine is not None and theirs is not None and theirs > mine:
                wrong.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    wrong.extend(f"cycle: {' -> '.join(c)}" for c in cycles(edges))
    return wrong


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among app modules, each reported once."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt) :] + [nxt]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append(cycle)
            elif len(path) < 12:
                visit(nxt, [*path, nxt])

    for start in sorted(edges):
        visit(start, [start])
    return found
