"""The layers point one way: ``hdl`` <- ``sim`` <- ``tb``, with the command line on top.

`check_tree` parses every module's imports (module level and inside functions) and lists the
violations; the tests run it on the repository and on small trees built to break each rule.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"hdl": 0, "sim": 1, "tb": 2}

# What `sim` may take from `hdl`: the architectural formats, never a gateware unit.
FORMAT_MODULES = {"hdl.formats", "hdl.vmx", "hdl.params", "hdl.board.formats",
                  "hdl.board.digest", "hdl.board.vm"}
# Simulators and test frameworks belong to `tb`.
SIMULATION_ONLY = ("amaranth.sim", "cocotb", "cocotb_tools", "cocotb_coverage", "pytest")
# Where a project import may sit inside a function: command modules (so that ``ipiv --help``
# starts fast) and a package's lazy ``__getattr__``.
COMMAND_MODULES = ("tb.cli", "tb.commands.", "sim.commands.", "tb.regress", "tb.formal.cli")


def _module_name(root, path):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module, is_package, node):
    """Absolute names a `from ... import` / `import` statement refers to."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def collect_imports(root):
    """{module: [(imported name, line, inside a function, function name)]} of hdl/sim/tb."""
    found = {}
    for top in LAYERS:
        for path in sorted((root / top).rglob("*.py")):
            module = _module_name(root, path)
            tree = ast.parse(path.read_text(), str(path))
            entries = []

            def visit(node, function):
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        visit(child, function or child.name)
                    elif isinstance(child, (ast.Import, ast.ImportFrom)):
                        for name in _resolve(module, path.name == "__init__.py", child):
                            entries.append((name, child.lineno, function is not None, function))
                    else:
                        visit(child, function)
            visit(tree, None)
            found[module] = entries
    return found


def _project_module(name, modules):
    """The project module ``name`` denotes (a submodule if it is one, else its package)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def check_tree(root):
    """Every layering violation under ``root``, one readable line each."""
    imports = collect_imports(Path(root))
    modules = set(imports)
    problems = []
    graph = {m: set() for m in modules}
    for module, entries in imports.items():
        layer = module.split(".")[0]
        for name, line, in_function, function in entries:
            where = f"{module}:{line}"
            if layer in ("hdl", "sim") and name.startswith(SIMULATION_ONLY):
                problems.append(f"{where}: {layer} imports {name} (simulators belong to tb)")
            target = _project_module(name, modules)
            if target is None or target == module:
                continue
            target_layer = target.split(".")[0]
            if LAYERS[target_layer] > LAYERS[layer]:
                problems.append(f"{where}: upward import of {target} from {layer}")
            if layer == "sim" and target_layer == "hdl" and target not in FORMAT_MODULES \
                    and name not in FORMAT_MODULES:
                problems.append(f"{where}: sim imports {name}, not one of hdl's formats")
            if in_function and not module.startswith(COMMAND_MODULES) and \
                    function != "__getattr__":
                problems.append(f"{where}: import of {target} inside {function}() "
                                f"(import at module level)")
            if not in_function:
                graph[module].add(target)
    problems += [f"circular import: {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    return list(dict.fromkeys(problems))


def _cycles(graph):
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                out.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


# -- the repository -----------------------------------------------------------------------------

def test_repository_layers_point_one_way():
    assert check_tree(ROOT) == []


def test_every_layer_has_modules():
    imports = collect_imports(ROOT)
    for layer in LAYERS:
        assert sum(1 for m in imports if m.split(".")[0] == layer) > 5, layer


def test_sim_loads_no_gateware_and_no_simulator():
    """At run time too: importing every `sim` module loads only hdl's formats (the package
    ``hdl`` loads its units lazily) and no simulator."""
    modules = sorted(m for m in collect_imports(ROOT) if m.split(".")[0] == "sim")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print('\\n'.join(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=120).stdout.split()
    hdl = {m for m in out if m.split(".")[0] == "hdl"} - {"hdl", "hdl.board"}
    assert hdl and hdl <= FORMAT_MODULES, sorted(hdl - FORMAT_MODULES)
    assert not [m for m in out if m.startswith(SIMULATION_ONLY) or m.split(".")[0] == "tb"]


# -- the checker can fail ---------------------------------------------------------------------

def _tree(tmp_path, files):
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_checker_accepts_a_clean_tree(tmp_path):
    root = _tree(tmp_path, {"hdl/formats.py": "X = 1\n",
                            "sim/model.py": "from hdl.formats import X\n",
                            "tb/bench.py": "from sim.model import X\nfrom hdl import formats\n"})
    assert check_tree(root) == []


@pytest.mark.parametrize("files, expected", [
    ({"hdl/unit.py": "from sim.model import Y\n", "sim/model.py": "Y = 1\n"},
     "hdl.unit:1: upward import of sim.model from hdl"),
    ({"sim/model.py": "def f():\n    from tb import bench\n", "tb/bench.py": ""},
     "sim.model:2: upward import of tb.bench from sim"),
    ({"sim/model.py": "from ..tb.bench import Z\n", "tb/bench.py": "Z = 1\n"},
     "upward import of tb.bench from sim"),
    ({"sim/model.py": "import amaranth.sim\n"}, "sim imports amaranth.sim"),
    ({"sim/model.py": "from hdl.unit import Unit\n", "hdl/unit.py": "Unit = 1\n"},
     "sim imports hdl.unit, not one of hdl's formats"),
    ({"tb/a.py": "def f():\n    from tb.b import B\n", "tb/b.py": "B = 1\n"},
     "tb.a:2: import of tb.b inside f()"),
    ({"sim/a.py": "from .b import B\nA = 1\n", "sim/b.py": "from .a import A\nB = 1\n"},
     "circular import: sim.a -> sim.b -> sim.a"),
])
def test_checker_fails_on_a_broken_tree(tmp_path, files, expected):
    problems = check_tree(_tree(tmp_path, files))
    assert any(expected in p for p in problems), problems


def test_checker_fails_on_an_upward_import_added_to_the_repository(tmp_path):
    """The repository's own tree with one upward import added is rejected."""
    copy = tmp_path / "repo"
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            target = copy / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
    assert check_tree(copy) == []
    golden = copy / "sim" / "golden.py"
    golden.write_text(golden.read_text() + "\nfrom tb.runs import run_bench\n")
    assert any("upward import of tb.runs from sim" in p for p in check_tree(copy))
