"""The package's layers, read from the code (every import, lazy ones too, parsed with ``ast``): imports flow
downward only, no module takes part in an import cycle, and the converter holds no SQL. A new upward import or
cycle fails here with the modules named."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tracetune"
# Lowest first. A unit may import its own modules and any unit of a LOWER layer; units of one layer are siblings
# that must not import each other.
LAYERS: list[set[str]] = [
    {"__init__", "errors"},
    {"config", "timeutil", "capabilities", "threads"},
    {"chat"},
    {"store"},
    {"models"},
    {"ingest"},
    {"query"},
    {"convert"},
    {"train", "serve"},
    {"evaluate"},
    {"loop"},
    {"server"},
    {"demo"},
    {"cli"},
    {"__main__"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
NO_SQL = ("convert",)  # the converter reads runs through query/, writes through the store's repositories


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``from a import b`` counts ``a`` and ``a.b``)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}
    return out


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(tracetune module → tracetune modules it imports, module → every import name)."""
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    raw = {}
    for name, path in modules.items():
        raw[name] = _imports(name, path)
        for target in raw[name]:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("tracetune") and target not in (name, "tracetune"):
                edges[name].add(target)
            elif target == "tracetune" and name != "tracetune":
                edges[name].add("tracetune")
    return edges, raw


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_unit_has_a_layer() -> None:
    units = {_unit(m) for m in _modules()}
    assert units <= set(RANK), f"units without a layer (add them to LAYERS): {sorted(units - set(RANK))}"


def test_imports_flow_downward_only() -> None:
    edges, _ = _graph()
    upward = sorted(
        f"{a} imports {b} ({_unit(a)} is layer {RANK[_unit(a)]}, {_unit(b)} is layer {RANK[_unit(b)]})"
        for a, targets in edges.items()
        for b in targets
        if _unit(a) != _unit(b) and RANK[_unit(b)] >= RANK[_unit(a)]
    )
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    edges, _ = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                cycles.append(sorted(component))

    for module in _modules():
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_converter_holds_no_sql() -> None:
    _, raw = _graph()
    offenders = sorted(
        f"{module} imports {name}"
        for module, names in raw.items()
        if _unit(module) in NO_SQL
        for name in names
        if name.split(".")[0] == "sqlalchemy" or name.startswith("tracetune.store.schema")
    )
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rules bite: an upward import written into a module is reported."""
    module = tmp_path / "m.py"
    module.write_text("from tracetune.server.app import create_app\n")
    assert "tracetune.server.app" in _imports("tracetune.store.m", module)
    assert RANK[_unit("tracetune.server.app")] > RANK[_unit("tracetune.store.m")]


def test_every_package_names_its_modules() -> None:
    """Each package's ``__init__`` docstring says what lives there: every module and subpackage is named in it
    (as ``name``, ``name.…`` or :mod:`.name`), so a new module is placed and described, not just dropped in."""
    unnamed = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        if "migrations" in init.parts:
            continue
        folder = init.parent
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        members = [p.stem for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__")]
        members += [p.name for p in folder.iterdir() if (p / "__init__.py").exists()]
        for name in members:
            if not any(form in doc for form in (f"``{name}``", f"``{name}.", f":mod:`.{name}`")):
                unnamed.append(f"{folder.relative_to(PACKAGE.parent)}/{name}")
    assert not unnamed, f"modules not named in their package's __init__ docstring: {unnamed}"
