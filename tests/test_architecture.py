"""The package's structure, checked on its source: imports run one way, no hidden module state.

The layers (docs/architecture.md), lowest first. A module may import from its own component and
from components of lower layers only; components of one layer are peers and do not import each
other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sempairs

PACKAGE = Path(sempairs.__file__).parent
LAYERS = [
    {"errors", "strict", "registry", "precision"},  # the foundation: no sempairs imports but errors
    {"atomic", "runlock"},
    {"csvio"},
    {"plotting"},
    {"data"},
    {"augment", "models", "losses"},
    {"methods"},
    {"config"},
    {"trained"},
    {"pairs", "eval"},
    {"train"},
    {"experiments", "review"},
    {"cli"},
]
RANK = {component: rank for rank, layer in enumerate(LAYERS) for component in layer}
MUTATORS = {"append", "extend", "insert", "update", "setdefault", "pop", "popitem", "clear", "add", "discard", "remove"}


def _modules() -> list[tuple[str, Path]]:
    """(dotted name, file) of every module of the package."""
    out = []
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), file))
    return out


def _component(module: str) -> str | None:
    """The top-level component of a dotted module name inside the package (None for the package itself)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "sempairs" and len(parts) > 1 else None


def _imports(module: str, file: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import in ``file``, module level or inside functions, relative ones resolved."""
    package = module if file.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if base == "sempairs"]
    return found


def test_every_component_has_a_layer():
    components = {_component(module) for module, _ in _modules()} - {None}
    assert components - set(RANK) == set(), "give each new component a layer in LAYERS and docs/architecture.md"


def test_imports_run_from_higher_layers_to_lower_ones():
    wrong = []
    for module, file in _modules():
        here = _component(module)
        for line, target in _imports(module, file):
            there = _component(target)
            if here is None or there is None or there == here or there not in RANK or here not in RANK:
                continue
            if RANK[there] >= RANK[here]:
                wrong.append(f"{file.relative_to(PACKAGE.parent)}:{line} imports {target} "
                             f"(layer {RANK[there]}) from layer {RANK[here]}")
    assert wrong == []


def test_no_type_checking_import_guards():
    guarded = [str(file.relative_to(PACKAGE.parent)) for _, file in _modules() if "TYPE_CHECKING" in file.read_text()]
    assert guarded == []


def _module_level_containers(tree: ast.Module) -> set[str]:
    """Names bound at module level to a list, dict or set (display, comprehension or constructor call)."""
    names = set()
    for node in tree.body:
        targets, value = [], None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        container = isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)) or (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
            and value.func.id in {"list", "dict", "set", "defaultdict", "OrderedDict", "Counter"})
        if container:
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _writes(function: ast.AST, names: set[str]) -> list[str]:
    """What ``function`` does to module state: ``global`` statements, item writes and mutating calls on ``names``."""
    found = []
    for node in ast.walk(function):
        if isinstance(node, ast.Global):
            found.append(f"global {', '.join(node.names)}")
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else node.targets if isinstance(node, ast.Delete) else []
        for target in targets:
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and target.value.id in names:
                found.append(f"{target.value.id}[...] written")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS
                and isinstance(node.func.value, ast.Name) and node.func.value.id in names):
            found.append(f"{node.func.value.id}.{node.func.attr}()")
    return found


def test_no_function_writes_module_level_state():
    """Module-level containers are constants; state lives in objects (a registry is a Registry instance)."""
    wrong = []
    for _, file in _modules():
        tree = ast.parse(file.read_text(), str(file))
        names = _module_level_containers(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                wrong += [f"{file.relative_to(PACKAGE.parent)}:{node.lineno}: {w}" for w in _writes(node, names)]
    assert sorted(set(wrong)) == []


@pytest.mark.parametrize("source, problem", [
    ("STATE = {}\ndef f():\n    STATE['a'] = 1\n", "STATE[...] written"),
    ("SEEN = []\ndef f(x):\n    SEEN.append(x)\n", "SEEN.append()"),
    ("count = 0\ndef f():\n    global count\n    count += 1\n", "global count"),
])
def test_the_state_check_sees_each_kind_of_write(source, problem):
    tree = ast.parse(source)
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    assert problem in _writes(function, _module_level_containers(tree))


def test_the_import_check_resolves_relative_and_function_level_imports(tmp_path):
    file = tmp_path / "mod.py"
    file.write_text("from .sibling import x\ndef f():\n    from sempairs.cli import app\n")
    assert _imports("sempairs.data.mod", file) == [(1, "sempairs.data.sibling"), (3, "sempairs.cli")]


def test_each_loss_is_a_module_of_its_own_that_stands_alone():
    """A new loss is one file in sempairs/losses: no list to extend, nothing of sempairs needed but shared numerics."""
    losses = PACKAGE / "losses"
    assert _imports("sempairs.losses", losses / "__init__.py") == []
    for file in losses.glob("*.py"):
        imported = {target for _, target in _imports(f"sempairs.losses.{file.stem}", file) if target.startswith("sempairs")}
        assert imported <= {"sempairs.losses._numerics"}, file.name
