"""The package's import graph has no cycle: layers only point down.

Every import counts: at the top level, inside functions, under ``if TYPE_CHECKING:`` (a type
that names an upper layer is a dependency on it), and ``importlib.import_module`` calls, whose
module name is a constant, an f-string or a concatenation: a call naming ``"kdfair.data." +
name`` depends on every module under ``kdfair.data``.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_name(node: ast.expr) -> tuple[str, bool] | None:
    """The module name an ``import_module`` argument names: (name, exact) for a constant,
    (leading constant text, False) for an f-string or a concatenation; None when unknown."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, True
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value), False
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = _imported_name(node.left)
        return (left[0], False) if left else None
    return None


def _dynamic_targets(node: ast.AST, modules: set[str]) -> set[str]:
    """The modules an ``importlib.import_module(...)`` call may import (none for other nodes)."""
    if not (isinstance(node, ast.Call) and node.args):
        return set()
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name != "import_module":
        return set()
    named = _imported_name(node.args[0])
    if named is None:
        return set()
    text, exact = named
    if exact:
        return {m for m in modules if m == text or m.startswith(text + ".")}
    return {m for m in modules if m.startswith(text) and m != text.rstrip(".")}


def _static_targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return []


def import_graph(root: Path = SRC, package: str = "kdfair") -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere (functions, TYPE_CHECKING blocks and
    importlib calls included)."""
    paths = {_module(p, root): p for p in (root / package).rglob("*.py")}
    modules = set(paths)
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            deps |= {t for t in _static_targets(node) if t in modules}
            deps |= _dynamic_targets(node, modules)
        graph[name] = deps - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def _ancestors_ok(graph):
    # a package's __init__ may re-export its submodules; that is not a cycle through the package
    return {n: {d for d in deps if not n.startswith(d + ".")} for n, deps in graph.items()}


def test_the_checker_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


PLANTED = {
    "pkg/__init__.py": "",
    "pkg/config.py": "def names():\n    from pkg.data.registry import names\n    return names()\n",
    "pkg/data/__init__.py": "",
    "pkg/data/cifar.py": "from pkg.config import names\n",
}


def test_the_checker_follows_importlib_into_a_planted_cycle(tmp_path):
    """config → data/registry (importlib, three spellings) → data/cifar → config."""
    spellings = ('importlib.import_module("pkg.data." + name)',
                 'importlib.import_module(f"pkg.data.{name}")',
                 'import_module("pkg.data.cifar")')
    for i, call in enumerate(spellings):
        root = tmp_path / str(i)
        _plant(root, {**PLANTED, "pkg/data/registry.py":
                      "import importlib\nfrom importlib import import_module\n\n\n"
                      f"def load(name):\n    return {call}\n"})
        graph = _ancestors_ok(import_graph(root, "pkg"))
        assert graph["pkg.data.registry"] >= {"pkg.data.cifar"}, call
        assert find_cycle(graph) == ["pkg.config", "pkg.data.registry", "pkg.data.cifar",
                                     "pkg.config"], call


def test_the_checker_follows_type_checking_imports(tmp_path):
    _plant(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "import pkg.b\n",
                      "pkg/b.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                                  "    from pkg.a import X\n"})
    assert find_cycle(import_graph(tmp_path, "pkg")) == ["pkg.a", "pkg.b", "pkg.a"]


def test_no_import_cycle_in_kdfair_lazy_imports_included():
    graph = _ancestors_ok(import_graph())
    assert "kdfair.runner" in graph and graph["kdfair.runner"]
    assert {"kdfair.data.cifar", "kdfair.data.trifeature"} <= graph["kdfair.data.registry"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_config_imports_no_registry():
    """Data set and model names are checked where the registries live, not in config."""
    assert not {d for d in import_graph()["kdfair.config"]
                if d.startswith(("kdfair.data", "kdfair.models"))}
