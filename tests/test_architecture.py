"""Architecture rules, checked from the source.

- no import cycles in the engine (`mlx_dpo/`) or the app (`tui/`), function-level imports included;
- no module named like a standard-library module;
- the app uses only the engine's public API (`from mlx_dpo import NAME`, NAME in `mlx_dpo.__all__`);
- every public name resolves, and the light ones load no MLX (the app's UI thread must not);
- the engine never imports the UI;
- a wheel carries every package and the bundled demo, and the demo is found from an installation.

The import graph is read with `ast`, so most of these need neither MLX nor Textual.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mlx_dpo", "tui")


# --- the import graph -------------------------------------------------------------------------------

def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file of the given top-level packages."""
    modules = {}
    for package in packages:
        for f in sorted((root / package).rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]  # a package is its __init__
            modules[".".join(parts)] = f
    return modules


def _known(name: str, modules) -> str | None:
    """The module of ours that `import name` runs: `name` itself, or its longest prefix we have
    (`import pkg.missing` runs pkg and then fails); None outside our packages."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _absolute(module: str, path: Path, level: int, name: str | None) -> str:
    """The absolute module a relative `from` refers to (`level` dots, then `name`)."""
    if not level:
        return name or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    parts = package.split(".")
    if level - 1 >= len(parts):
        raise AssertionError(f"{path}: relative import beyond the top-level package")
    parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([name] if name else []))


def _lazy_api(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """A package's lazy public API: its top-level `_API = {name: (submodule, attribute)}` literal."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id == "_API" for t in node.targets)):
            return ast.literal_eval(node.value)
    return {}


def import_graph(root: Path, packages=PACKAGES) -> dict[str, dict[str, list[str]]]:
    """module -> {imported module: ["file:line", ...]} over our packages.

    Every import statement counts, wherever it is (module level, functions, `if TYPE_CHECKING`).
    `from pkg import name` is an edge to the submodule `pkg.name` when that is a module, else to
    `pkg` (its __init__). A package's lazy `_API` entries are edges from the package to the modules
    they name. The implicit "importing a submodule first runs its parent's __init__" is not an edge:
    it cannot close a cycle that the explicit imports do not.
    """
    modules = module_files(root, packages)
    graph: dict[str, dict[str, list[str]]] = {m: {} for m in modules}

    def edge(src: str, target: str | None, where: str) -> None:
        if target is not None and target != src and where not in graph[src].get(target, []):
            graph[src].setdefault(target, []).append(where)

    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edge(module, _known(alias.name, modules), where)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, path, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    edge(module, sub if sub in modules else _known(base, modules), where)
        if path.name == "__init__.py":
            for name, (target, _attr) in _lazy_api(tree).items():
                edge(module, _known(f"{module}.{target}", modules), f"{rel}: _API[{name!r}]")
    return graph


def strongly_connected(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (the import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
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
    return sorted(found)


def a_cycle(graph, component: list[str]) -> list[str]:
    """One shortest cycle through the first module of a component (breadth-first within it)."""
    start, members = component[0], set(component)
    parent = {start: None}
    queue = [start]
    for v in queue:
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return path[::-1] + [start]
            if w in members and w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # cannot happen in a component


def describe_cycles(graph) -> list[str]:
    """Each cycle spelled out, every step with the import that makes it."""
    out = []
    for component in strongly_connected(graph):
        cycle = a_cycle(graph, component)
        steps = [cycle[0]] + [f"-> {b}  ({', '.join(graph[a][b])})" for a, b in zip(cycle, cycle[1:])]
        out.append(f"cycle among {', '.join(component)}:\n    " + "\n    ".join(steps))
    return out


# --- the checker itself, on packages made for it --------------------------------------------------

def _write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        f = root / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text))


def test_checker_finds_a_cycle_through_a_function_level_relative_import(tmp_path):
    _write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "def f():\n    from .. import a\n",
        "pkg/b.py": "from .sub.c import f\n",
    })
    graph = import_graph(tmp_path, ["pkg"])
    assert strongly_connected(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    [text] = describe_cycles(graph)
    assert "pkg.a\n    -> pkg.b  (pkg/a.py:1)\n    -> pkg.sub.c  (pkg/b.py:1)\n    -> pkg.a  (pkg/sub/c.py:2)" in text


def test_checker_counts_lazy_api_entries_and_from_package_imports(tmp_path):
    _write_package(tmp_path, {
        "pkg/__init__.py": '_API = {"Thing": ("deep.mod", "Thing")}\n',
        "pkg/deep/__init__.py": "",
        "pkg/deep/mod.py": "from pkg import Other  # a name of the package, not a module: an edge to pkg\n",
    })
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg"] == {"pkg.deep.mod": ["pkg/__init__.py: _API['Thing']"]}
    assert strongly_connected(graph) == [["pkg", "pkg.deep.mod"]]


def test_checker_ignores_the_implicit_parent_init_and_outside_modules(tmp_path):
    # pkg/__init__ imports a, a imports the submodule pkg.b (which runs pkg/__init__ first: not an
    # edge), b imports a sibling module through `from pkg import c` and things outside the package.
    _write_package(tmp_path, {
        "pkg/__init__.py": "from . import a\n",
        "pkg/a.py": "import pkg.b\nimport os.path\n",
        "pkg/b.py": "from pkg import c\nfrom json import dumps\n",
        "pkg/c.py": "",
    })
    graph = import_graph(tmp_path, ["pkg"])
    assert graph == {"pkg": {"pkg.a": ["pkg/__init__.py:1"]}, "pkg.a": {"pkg.b": ["pkg/a.py:1"]},
                     "pkg.b": {"pkg.c": ["pkg/b.py:1"]}, "pkg.c": {}}
    assert strongly_connected(graph) == []


# --- the rules ----------------------------------------------------------------------------------------

def test_no_import_cycles():
    cycles = describe_cycles(import_graph(ROOT))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_is_named_like_a_standard_library_module():
    clashes = sorted(f"{name} ({path.relative_to(ROOT)})" for name, path in module_files(ROOT).items()
                     if set(name.split(".")) & sys.stdlib_module_names)
    assert not clashes, f"named like standard-library modules: {clashes}"


def test_the_app_uses_only_the_public_engine_api():
    import mlx_dpo

    public = set(mlx_dpo.__all__)
    private = []
    for name, path in module_files(ROOT, ["tui"]).items():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                private += [f"{rel}:{node.lineno}: import {a.name}" for a in node.names
                            if a.name.split(".")[0] == "mlx_dpo"]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "mlx_dpo":
                names = [a.name for a in node.names]
                if node.module != "mlx_dpo" or not set(names) <= public:
                    private.append(f"{rel}:{node.lineno}: from {node.module} import {', '.join(names)}")
    assert not private, "tui/ imports beyond `from mlx_dpo import <name in mlx_dpo.__all__>`:\n" + "\n".join(private)


def test_every_public_name_resolves():
    import mlx_dpo

    missing = []
    for name in mlx_dpo.__all__:
        try:
            getattr(mlx_dpo, name)
        except Exception as e:  # noqa: BLE001 - report every broken name at once
            missing.append(f"{name}: {type(e).__name__}: {e}")
    assert not missing, "public names that do not resolve:\n" + "\n".join(missing)


def test_light_public_names_load_no_mlx():
    # A spy on the import system records who first asks for MLX, so a failure names the culprit.
    code = textwrap.dedent("""
        import json, sys, traceback

        class Spy:
            stack = ""

            @classmethod
            def find_spec(cls, name, path=None, target=None):
                if name.split(".")[0] == "mlx" and not cls.stack:
                    frames = [f for f in traceback.extract_stack()[:-1] if not f.filename.startswith("<")]
                    cls.stack = "".join(traceback.format_list(frames))
                return None

        sys.meta_path.insert(0, Spy)
        import mlx_dpo
        from mlx_dpo import DEMO_MODEL, LOSS_KINDS, LOSS_PARAMS, TrainConfig, UsageError, loss_params, read_run
        print(json.dumps({"loaded": "mlx.core" in sys.modules, "stack": Spy.stack}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert not result["loaded"], "importing the light public names loaded mlx.core, first asked for here:\n" + result["stack"]


def test_engine_never_imports_the_ui():
    src = ROOT / "mlx_dpo"
    for f in src.rglob("*.py"):
        for line in f.read_text().splitlines():
            assert not line.strip().startswith(("import textual", "from textual", "import tui", "from tui")), f
    # every engine module (but `python -m mlx_dpo`'s entry point, which would run the CLI)
    engine = [m for m in module_files(ROOT, ["mlx_dpo"]) if m.rpartition(".")[2] != "__main__"]
    code = (f"import importlib, sys; [importlib.import_module(m) for m in {engine!r}]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# --- packaging --------------------------------------------------------------------------------------

def test_wheel_carries_every_package_and_the_demo(tmp_path):
    # Built from a copy of the tree: setuptools' build/ folder in the checkout would otherwise keep
    # files of earlier builds, and concurrent edits could change the tree under the build.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
        "runs", ".demo"))
    out = tmp_path / "wheel"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(out)],
                       cwd=src, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    [wheel] = out.glob("mlx_dpo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    sources = {f.relative_to(src).as_posix() for package in PACKAGES for f in (src / package).rglob("*.py")}
    assert sources, "no sources found"
    assert not sources - names, f"missing from the wheel: {sorted(sources - names)}"
    data = {"tui/app.tcss", "sample_data/demo-model/config.json", "sample_data/demo-model/model.safetensors",
            "sample_data/demo_pairs.jsonl"}
    assert not data - names, f"missing from the wheel: {sorted(data - names)}"
    stray = sorted(n for n in names if n.split("/")[0] in ("tests", "benchmarks"))
    assert not stray, f"test or benchmark files in the wheel: {stray}"


def test_demo_finds_an_installed_sample_data_package_not_the_checkout(tmp_path):
    site = tmp_path / "site"
    (site / "sample_data" / "demo-model").mkdir(parents=True)
    (site / "sample_data" / "__init__.py").write_text("")
    (site / "sample_data" / "demo-model" / "config.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (f"import json, sys; sys.path.insert(0, {str(site)!r}); "
            "from mlx_dpo import DEMO_MODEL, default_model; "
            "print(json.dumps([str(DEMO_MODEL), default_model()]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    model, default = json.loads(r.stdout)
    assert Path(model) == (site / "sample_data" / "demo-model").resolve()
    assert default == model


# ---------------------------------------------------------------------------------------------------------
# No wall-clock asserts: CI runs on a shared, often loaded machine; time budgets belong in benchmarks.

CLOCKS = {"time", "perf_counter", "monotonic", "process_time"}
TIMING_NAMES = ("elapsed", "secs", "duration", "took")


def _reads_a_clock(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in CLOCKS:
                return True
        if isinstance(sub, ast.Name) and any(t in sub.id.lower() for t in TIMING_NAMES):
            return True
    return False


def timing_asserts(source: str, filename: str) -> list[str]:
    """`assert` statements that compare a clock reading (or a variable named like one) with a bound."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Assert):
            for cmp in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
                if any(isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) for op in cmp.ops) and _reads_a_clock(cmp):
                    found.append(f"{filename}:{node.lineno}: {ast.unparse(node.test)}")
    return found


def test_timing_assert_checker_finds_one():
    src = "import time\nt0 = time.perf_counter()\nkilled_secs = time.perf_counter() - t0\nassert killed_secs < 120\n" \
          "assert time.monotonic() - t0 < 5\nassert rows[0]['step_seconds'] == 1.0\n"
    assert [line.split(": ", 1)[0] for line in timing_asserts(src, "t.py")] == ["t.py:4", "t.py:5"]


def test_no_test_asserts_on_wall_clock_time():
    found = []
    for f in sorted((ROOT / "tests").rglob("*.py")):
        found += timing_asserts(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))
    assert not found, "wall-clock asserts (flaky under load; measure in a benchmark instead):\n" + "\n".join(found)
