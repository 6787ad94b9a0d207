"""The house's dependency rules (DESIGN.md, "The house"), checked on the source's import statements.

Dependencies flow one way: ops <- layers <- models; data, losses and metrics stand alone; engine and
spectral use models, data, losses and metrics and are siblings (neither imports the other); the
study sits on engine, spectral and bench; cli, bench and the demo sit on top. Top-level modules
(errors, atomic, disk, output, fourier, kan, inference) are neutral and import no subpackage but
each other and ops (inference needs none). No module imports another that imports it back, even
lazily (inside a function). Importing the package loads neither MONAI, numba nor triton: those are
imported by the feature that uses them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "specmamba"

#: Everything above the standalone subpackages.
_UPPER = {"engine", "spectral", "bench", "cli", "demo", "study"}
#: subpackage -> the subpackages it must not import
FORBIDDEN = {
    "ops": {"layers", "models", "losses", "metrics", "data"} | _UPPER,
    "layers": {"models", "losses", "metrics", "data"} | _UPPER,
    "models": {"losses", "metrics", "data"} | _UPPER,
    "data": {"ops", "layers", "models", "losses", "metrics"} | _UPPER,
    "losses": {"ops", "layers", "models", "metrics", "data"} | _UPPER,
    "metrics": {"ops", "layers", "models", "losses", "data"} | _UPPER,
    "engine": {"spectral", "bench", "cli", "demo", "study"},
    "spectral": {"engine", "bench", "cli", "demo", "study"},
    "study": {"cli", "demo"},
    "bench": {"study"},
}
NEUTRAL = {"errors", "atomic", "disk", "output", "fourier", "kan", "inference"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """specmamba modules imported anywhere in ``path`` (also in functions), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("specmamba"))
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            if not module.startswith("specmamba"):
                continue
            found.add(module)
            for alias in node.names:  # "from . import x" may name a submodule
                if (SRC.parent / Path(*f"{module}.{alias.name}".split("."))).with_suffix(".py").is_file():
                    found.add(f"{module}.{alias.name}")
    return found


GRAPH = {_module_name(p): _imports(p) for p in SRC.rglob("*.py")}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("area", sorted(FORBIDDEN))
def test_dependencies_flow_one_way(area):
    offences = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _area(module) == area
        for target in targets
        if _area(target) in FORBIDDEN[area]
    ]
    assert not offences, offences


def test_neutral_modules_import_no_subpackage_but_ops():
    offences = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _area(module) in NEUTRAL
        for target in targets
        if _area(target) not in NEUTRAL | {"ops", ""}
    ]
    assert not offences, offences


def test_no_import_cycles():
    """Depth-first search for a module that reaches itself (package __init__ re-exports excepted)."""
    graph = {m: {t for t in ts if t in GRAPH and t != m} for m, ts in GRAPH.items()}
    packages = {m for m in GRAPH if (SRC.parent / Path(*m.split("."))).is_dir()}

    def edges(module: str) -> set[str]:
        # importing a submodule runs its package's __init__ first; that edge is the import system's
        return {t for t in graph[module] if not (t in packages and module.startswith(t + "."))}

    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in edges(module):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, cycles


def test_importing_the_package_loads_no_optional_heavy_dependency():
    code = (
        "import sys, specmamba, specmamba.engine, specmamba.spectral, specmamba.cli.main; "
        "print(sorted(m for m in ('monai', 'numba', 'triton', 'mamba_ssm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
