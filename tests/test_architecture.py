"""The import rule of docs/architecture.md: imports point one way, from later stages to earlier ones, never back,
and never in a cycle. Every import counts, including those inside functions."""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("core", "runtime", "training", "export", "pwa", "api", "cxr")

# Lower layers first. A module may import its own group and any group of a lower layer; groups of one layer do not
# import each other.
LAYERS = {
    "core": 0,  # torch-free base: classes, decoding, heatmap maths, metrics, JSON
    "runtime": 1,  # onnxruntime inference: the predictor, bands (no torch)
    "training.graph": 1,  # torch modules that go into the ONNX graph (preprocessing, lungs)
    "training.data": 2,
    "training.model": 2,
    "training.loop": 3,
    "training.evaluation": 4,
    "training.commands": 4.5,  # the `cxr` entries of the training stages (argument parsing, printing, exit codes)
    "export": 5,
    "pwa": 6,
    "api": 6.5,  # the REST API may serve the PWA (pwa.headers), so it sits just above it
    "cxr": 7,
}
# What a deployable package may import of the project at all: the torch-free base and the runtime (and, for the
# API, the PWA's headers). By construction, then, they never load torch (test_deployables_never_import_torch).
ALLOWED = {"runtime": ("core",), "pwa": ("core", "runtime"), "api": ("core", "runtime", "pwa")}
TORCH = ("torch", "torchvision", "timm", "onnxscript", "onnxsim")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of everything `path` imports, relative imports resolved, at any depth of the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def project_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports."""
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path) if m in modules and m != name}
    return graph


def group(module: str) -> str:
    return max((g for g in LAYERS if module == g or module.startswith(g + ".")), key=len, default="")


def backward_imports(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in graph.items():
        mine = group(module)
        for target in targets:
            theirs = group(target)
            if not mine or not theirs or mine == theirs:
                continue
            if LAYERS[theirs] >= LAYERS[mine]:
                problems.append(f"{module} imports {target}: {theirs} is not below {mine}")
            elif mine in ALLOWED and theirs.split(".")[0] not in ALLOWED[mine]:
                problems.append(f"{module} imports {target}: {mine} must not use {theirs}")
    return sorted(problems)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_belongs_to_a_layer():
    graph = project_graph()
    assert len(graph) > 40  # the walk found the tree
    strays = [m for m in graph if not group(m) and m != "training"]
    assert not strays, f"modules outside every layer of docs/architecture.md: {strays}"


def test_no_backward_import():
    assert backward_imports(project_graph()) == []


def test_no_import_cycle():
    assert cycles(project_graph()) == []


@pytest.mark.parametrize("graph, expected", [
    ({"core.decode": {"training.model.checkpoint"}, "training.model.checkpoint": set()}, "not below"),
    ({"runtime.predictor": {"training.loop.train"}, "training.loop.train": set()}, "not below"),
    ({"api.engine": {"training.model.checkpoint"}, "training.model.checkpoint": set()}, "must not use"),
    ({"pwa.site": {"training.graph.lungs"}, "training.graph.lungs": set()}, "must not use"),
    ({"runtime.predictor": {"training.graph.lungs"}, "training.graph.lungs": set()}, "not below"),
    ({"pwa.site": {"api.app"}, "api.app": set()}, "not below"),
    ({"training.data.cache": {"training.model.arch"}, "training.model.arch": set()}, "not below"),  # siblings
])
def test_the_checks_catch_what_they_are_for(graph, expected):
    problems = backward_imports(graph)
    assert problems and expected in problems[0]
    assert cycles({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}) == [["a.x", "a.y", "a.z"]]


def test_function_level_imports_count(tmp_path, monkeypatch):
    module = REPO / "core" / "classes.py"
    names = imports_of(REPO / "export" / "commands" / "verify.py")
    assert "export.package" in names  # imported inside verify_dir, not at the top
    assert imports_of(module) == set()


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the non-project modules `path` imports, at any depth of the file."""
    return {name.split(".")[0] for name in imports_of(path)} - set(PACKAGES) - {"__future__"}


def test_deployables_never_import_torch():
    """core and runtime import no torch, so neither can anything that stands on them alone: pwa and api (which may
    import only core, runtime and pwa: test_no_backward_import)."""
    for package in ("core", "runtime", "pwa", "api"):
        for path in (REPO / package).rglob("*.py"):
            found = third_party_imports(path) & set(TORCH)
            assert not found, f"{path.relative_to(REPO)} imports {sorted(found)}"


def test_the_torch_check_sees_function_level_imports(tmp_path):
    planted = REPO / "core" / "planted_for_test.py"
    planted.write_text("def f():\n    import torch.nn\n")
    try:
        assert third_party_imports(planted) & set(TORCH) == {"torch"}
    finally:
        planted.unlink()
