"""Import boundaries, read from the source with `ast` (nothing is imported):

- the product (pipeline/ without its sandbox, tasks/, schemas/, celeryconfig.py) never imports
  `pipeline.sandbox`, in any form and at any depth (a function-level import counts; an
  `if TYPE_CHECKING:` block does not);
- no import cycle among the modules of pipeline/ (its sandbox included: a cycle there breaks
  the demo and the tests just the same), tasks/, schemas/ and celeryconfig.py;
- no room of the product imports a higher layer (`pipeline.LAYERS`, lowest first; tasks/ and
  celeryconfig.py sit above them all; the sandbox and the schemas, contracts, stand outside).

`from a.b import c` is an import of module `a.b.c` when that is a module of ours, else of `a.b`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "tasks", "schemas")
SANDBOX = "pipeline.sandbox"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    path: Path
    line: int
    target: str  # the imported module (or, for an outside name, the name as written)

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def modules(root: Path) -> dict[str, Path]:
    """Our modules, dotted name -> file (a package is its __init__.py)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    if (root / "celeryconfig.py").is_file():
        found["celeryconfig"] = root / "celeryconfig.py"
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Reader(ast.NodeVisitor):
    def __init__(self, source: str, path: Path, known: dict[str, Path]) -> None:
        self.source, self.path, self.known = source, path, known
        self.package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        self.imports: list[Import] = []

    def visit_If(self, node: ast.If) -> None:
        if _type_checking(node.test):
            for child in node.orelse:  # only the `else:` of `if TYPE_CHECKING:` runs
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append(Import(self.source, self.path, node.lineno, alias.name))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: from the package, up level - 1
            package = self.package.split(".")
            anchor = ".".join(package[: len(package) - node.level + 1])
            base = f"{anchor}.{base}" if base else anchor
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            target = submodule if submodule in self.known else base
            self.imports.append(Import(self.source, self.path, node.lineno, target))


def imports(root: Path) -> list[Import]:
    """Every import statement of our modules, at any depth, but for `if TYPE_CHECKING:` blocks."""
    known = modules(root)
    found: list[Import] = []
    for source, path in known.items():
        reader = _Reader(source, path, known)
        reader.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        found.extend(reader.imports)
    return found


def in_sandbox(module: str) -> bool:
    return module == SANDBOX or module.startswith(SANDBOX + ".")


def sandbox_imports(root: Path) -> list[str]:
    """`path:line: product.module imports pipeline.sandbox...`, one line per offence."""
    return [
        f"{i.where(root)}: {i.source} imports {i.target}"
        for i in imports(root)
        if not in_sandbox(i.source) and in_sandbox(i.target)
    ]


def _owner(target: str, known: dict[str, Path]) -> str | None:
    """The module of ours that `target` names (`import a.b.c` of a module a.b.c, or a.b)."""
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def graph(root: Path) -> dict[str, dict[str, Import]]:
    """module -> {module it imports: the first such import}."""
    known = modules(root)
    edges: dict[str, dict[str, Import]] = {module: {} for module in known}
    for found in imports(root):
        target = _owner(found.target, known)
        if target is not None:
            edges[found.source].setdefault(target, found)
    return edges


def _strongly_connected(edges: dict[str, dict[str, Import]]) -> Iterator[list[str]]:
    """Tarjan's components, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in edges[node]:
            if successor not in index:
                yield from visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            yield sorted(component)

    for node in sorted(edges):
        if node not in index:
            yield from visit(node)


def _shortest_cycle(edges: dict[str, dict[str, Import]], start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one component (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(edges[node]):
                if successor not in within:
                    continue
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if successor not in parents:
                    parents[successor] = node
                    following.append(successor)
        frontier = following
    return []


def layer(module: str, layers: tuple[tuple[str, ...], ...]) -> int | None:
    """The layer of a product module (its room under `pipeline.`); None for what stands outside."""
    if module in ("tasks", "celeryconfig") or module.startswith("tasks."):
        return len(layers)
    parts = module.split(".")
    if parts[0] != "pipeline" or in_sandbox(module):
        return None
    if len(parts) == 1:
        return 0
    for depth, rooms in enumerate(layers):
        if parts[1] in rooms:
            return depth
    raise AssertionError(f"{module}: in no layer of pipeline.LAYERS")


def upward_imports(root: Path, layers: tuple[tuple[str, ...], ...]) -> list[str]:
    """`path:line: a (layer) imports b (higher layer)`, one line per offence."""
    known = modules(root)
    found = []
    for i in imports(root):
        target = _owner(i.target, known)
        if target is None:
            continue
        below, above = layer(i.source, layers), layer(target, layers)
        if below is not None and above is not None and above > below:
            found.append(f"{i.where(root)}: {i.source} (layer {below}) imports {target} (layer {above})")
    return found


def cycles(root: Path) -> list[str]:
    """Each import cycle as a readable path: `a (a.py:3) -> b (b.py:9) -> a`; for every module
    in a cycle, the shortest cycle through it (a cycle found from two modules is listed once)."""
    edges = graph(root)
    found: dict[frozenset[tuple[str, str]], str] = {}
    for component in _strongly_connected(edges):
        if len(component) == 1 and component[0] not in edges[component[0]]:
            continue
        for start in component:
            path = _shortest_cycle(edges, start, set(component))
            steps = list(pairwise(path))
            text = " -> ".join(f"{a} ({edges[a][b].where(root)})" for a, b in steps) + f" -> {path[-1]}"
            found.setdefault(frozenset(steps), text)
    return list(found.values())


# -- the project -----------------------------------------------------------------------------


def test_the_reader_sees_the_project():
    expected = {"pipeline.cli", "pipeline.sandbox.stack", "tasks", "schemas.tenants", "celeryconfig"}
    assert expected <= set(modules(ROOT))
    assert any(i.source == "celeryconfig" and i.target == "pipeline.settings" for i in imports(ROOT))


def test_the_product_never_imports_the_sandbox():
    offences = sandbox_imports(ROOT)
    assert not offences, "the product imports the sandbox:\n" + "\n".join(offences)


def test_every_room_is_in_a_layer_and_none_imports_a_higher_one():
    from pipeline import LAYERS

    rooms = {
        path.stem
        for path in (ROOT / "pipeline").iterdir()
        if path.suffix == ".py" or (path / "__init__.py").is_file()
    }
    assert rooms - {"__init__", "sandbox"} == {room for layer in LAYERS for room in layer}
    offences = upward_imports(ROOT, LAYERS)
    assert not offences, "imports of a higher layer:\n" + "\n".join(offences)


def test_there_is_no_import_cycle():
    found = cycles(ROOT)
    assert not found, "import cycles:\n" + "\n".join(found)


# -- the checks themselves, on a planted tree --------------------------------------------------

PLANTED = {
    "celeryconfig.py": "from pipeline import settings\n",
    "pipeline/__init__.py": "",
    "pipeline/settings.py": "import os\n",
    "pipeline/vocabulary.py": "import enum\nfrom pipeline.cli import demo\n",
    "pipeline/cli/__init__.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pipeline.sandbox import stack\n"  # ignored
        "def demo():\n"
        "    from pipeline import sandbox\n"  # line 5
        "    import pipeline.sandbox.stack\n"  # line 6
    ),
    "pipeline/web.py": "class App:\n    def run(self):\n        from pipeline.sandbox.stack import Stack\n",
    "pipeline/sandbox/__init__.py": "",
    "pipeline/sandbox/stack.py": "from pipeline import settings\nfrom . import chaos\n",
    "pipeline/sandbox/chaos.py": "import pipeline.sandbox.stack\n",
    "tasks/__init__.py": "from tasks.base import Task\n",
    "tasks/base.py": "def flush():\n    from tasks import flushing\n",
    "tasks/flushing.py": "from tasks.base import flush\n",
    "schemas/__init__.py": "",
}


def _plant(tmp_path: Path) -> Path:
    for name, text in PLANTED.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_every_form_of_sandbox_import_is_caught_with_its_line(tmp_path):
    root = _plant(tmp_path)
    assert sandbox_imports(root) == [
        "pipeline/cli/__init__.py:5: pipeline.cli imports pipeline.sandbox",
        "pipeline/cli/__init__.py:6: pipeline.cli imports pipeline.sandbox.stack",
        "pipeline/web.py:3: pipeline.web imports pipeline.sandbox.stack",
    ]


def test_an_import_of_a_higher_layer_is_caught_with_its_line(tmp_path):
    root = _plant(tmp_path)
    layers = (("settings", "vocabulary"), ("web",), ("cli",))
    assert upward_imports(root, layers) == [
        "pipeline/vocabulary.py:2: pipeline.vocabulary (layer 0) imports pipeline.cli (layer 2)",
    ]


def test_cycles_are_found_through_function_level_and_relative_imports(tmp_path):
    root = _plant(tmp_path)
    assert sorted(cycles(root)) == [
        "pipeline.sandbox.chaos (pipeline/sandbox/chaos.py:1) -> pipeline.sandbox.stack "
        "(pipeline/sandbox/stack.py:2) -> pipeline.sandbox.chaos",
        "tasks.base (tasks/base.py:2) -> tasks.flushing (tasks/flushing.py:1) -> tasks.base",
    ]
