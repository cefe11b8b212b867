"""The layers of the house, read from the imports of every module (docs/architecture.md, "Layers").

Inside the core, imports flow one way, nn -> io -> deltas -> inversion -> face/editing -> train/metrics -> run -> cli:
a module imports only modules of its own subpackage or of lower layers (so train and metrics, one layer, never
import each other), module-level and function-local imports alike; the modules import each other in no cycle; the
core never imports ComfyUI; the nodes import only the core's public API.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = "hyperstyle_core"
# Layer of each part of the core (a subpackage, or a top-level module); higher layers may import lower ones.
LAYERS: dict[str, float] = {
    "devices": 0, "_legacy": 0,
    "nn": 1,
    "io": 2,
    "deltas": 3,
    "inversion": 4, "batched": 4.5,
    "face": 5, "editing": 5,
    "train": 6, "metrics": 6,
    "run": 7,
    "cli": 8, "testing": 8,
    "__main__": 9,
}
COMFY_MODULES = ("comfy", "folder_paths", "nodes", "server", "comfy_execution", "comfy_api")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_statements(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names taken from it, line) of every import in the file, relative modules resolved; a plain
    `import a.b` takes no names."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module, line) and (module.name, line) for every import: what a module may be importing."""
    found = []
    for module, names, line in _import_statements(path):
        found += [(module, line)] + [(f"{module}.{n}", line) for n in names]
    return found


def _core_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((REPO / CORE).rglob("*.py"))}


def _core_graph() -> dict[str, dict[str, int]]:
    """{module: {core module it imports: line}}; `from pkg import name` imports the module pkg.name if there is
    one, else pkg itself."""
    modules = _core_modules()

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, path in modules.items():
        targets: dict[str, int] = {}
        for module, names, line in _import_statements(path):
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            for target in submodules + ([owner(module)] if len(submodules) < max(1, len(names)) else []):
                if target and target not in (name, CORE):
                    targets.setdefault(target, line)
        graph[name] = targets
    return graph


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_every_part_of_the_core_has_a_layer():
    parts = {_part(m) for m in _core_modules() if m != CORE}
    assert parts <= set(LAYERS), f"add {sorted(parts - set(LAYERS))} to LAYERS (and to docs/architecture.md)"


def test_core_imports_flow_down_the_layers():
    upward = [f"{module}:{line} imports {target}" for module, targets in _core_graph().items()
              for target, line in targets.items() if module != CORE and _part(module) != _part(target)
              and LAYERS[_part(target)] >= LAYERS[_part(module)]]
    assert not upward, "imports that do not go down a layer:\n" + "\n".join(upward)


def test_core_modules_import_each_other_in_no_cycle():
    graph = _core_graph()
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph.get(module, {}):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_core_never_imports_comfyui():
    found = [f"{name}:{line} imports {imported}" for name, path in _core_modules().items()
             for imported, line in _imports(path) if imported.split(".")[0] in COMFY_MODULES]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", sorted((REPO / "nodes").glob("*.py")), ids=lambda p: p.name)
def test_nodes_import_only_the_public_core_api(path):
    """A node imports names from `hyperstyle_core` itself or from a core subpackage's public face (its
    __init__), never from a module file inside the core."""
    packages = {_module_name(p.parent) for p in (REPO / CORE).rglob("__init__.py")}
    wrong = [f"nodes/{path.name}:{line} imports from {module}" for module, _, line in _import_statements(path)
             if module.split(".")[0] == CORE and module not in packages]
    assert not wrong, "nodes use the public API (hyperstyle_core or a subpackage's __init__):\n" + "\n".join(wrong)
