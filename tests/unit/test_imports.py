"""Import weight and import cycles, read from the code itself.

Light modules stay light: the CLI loads the simulator, Starlette and uvicorn only for
the commands that need them, and the request model, the catalogue and pricing load no
Celery. Each rule is checked in a fresh interpreter, where nothing was imported before.

The package graph has no cycles: every ``import`` statement counts, including those
inside functions and under ``TYPE_CHECKING``, so a cycle cannot hide behind a lazy
import. Cycles that remain are listed in :data:`KNOWN_CYCLES`; a new one fails the test,
and so does a listed one that is gone (so the list only shrinks).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worker", "tasks", "config", "simulator")

# Cycles in modules that other work is changing at the moment; each is to be broken there.
KNOWN_CYCLES: set[frozenset[str]] = set()


def _loaded_after(statement: str, prefixes: list[str]) -> list[str]:
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {prefixes!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize(
    "module", ["worker.render.request", "worker.render.catalogue", "worker.render.pricing"]
)
def test_the_request_model_catalogue_and_pricing_load_no_celery(module: str) -> None:
    assert _loaded_after(f"import {module}", ["celery", "kombu", "redbeat"]) == []


def test_the_cli_loads_no_simulator_server_or_celery_until_a_command_needs_them() -> None:
    heavy = ["simulator", "starlette", "uvicorn", "celery", "tasks"]
    assert _loaded_after("import worker.cli.main", heavy) == []


def test_the_cli_loads_a_lazy_command_when_it_is_asked_for() -> None:
    statement = (
        "import click, worker.cli.main\n"
        "ctx = click.Context(worker.cli.main.main)\n"
        "assert worker.cli.main.main.get_command(ctx, 'simulate') is not None"
    )
    assert "simulator.cli" in _loaded_after(statement, ["simulator"])


def test_the_storage_loads_no_http_and_the_download_no_storage() -> None:
    # The storage knows bytes, not HTTP; the download knows HTTP, not storage. A sink is
    # where they meet, in the job's step (STYLE.md, habit 17).
    storage = "import worker.storage, worker.storage.local, worker.storage.s3"
    loaded = _loaded_after(storage, ["httpx", "httpcore", "worker"])
    assert "worker.storage.s3" in loaded
    assert [m for m in loaded if not m.startswith("worker") or "provider" in m] == []
    download = "import worker.provider.download, worker.provider.image_download"
    loaded = _loaded_after(download, ["worker"])
    assert "worker.provider.download" in loaded
    assert [m for m in loaded if m.startswith("worker.storage")] == []


def test_celery_finds_the_app_on_the_worker_package() -> None:
    statement = "import worker\nfrom celery import Celery\nassert isinstance(worker.app, Celery)"
    assert "worker.infra.celery_app" in _loaded_after(statement, ["worker"])


# The import graph ---------------------------------------------------------------------------


def _module_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement loads: modules, or a module's attribute."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    source = node.module or ""
    if node.level:  # relative: from the package of this module, up node.level - 1 levels
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join([*base, *([node.module] if node.module else [])])
    return [f"{source}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Each module of the packages and the modules of the packages it imports anywhere."""
    files = _module_files()

    def owner(name: str) -> str | None:  # the module itself, or the one that defines it
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _imported(node, module, path.name == "__init__.py"):
                    if (target := owner(name)) is not None:
                        edges.add(target)
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    graph = import_graph()
    assert "worker.infra.celery_app" in graph["worker"]  # under TYPE_CHECKING and in __getattr__
    assert "worker.cli.devstack" in graph["worker.cli.main"]  # inside the dev command
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}


def test_no_import_cycles_beyond_the_known_ones() -> None:
    found = cycles(import_graph())
    new = [sorted(c) for c in found - KNOWN_CYCLES]
    gone = [sorted(c) for c in KNOWN_CYCLES - found]
    assert not new, f"import cycles: {new}; break them (a lazy import does not count)"
    assert not gone, f"cycles no longer there: remove them from KNOWN_CYCLES: {gone}"


# What each package of worker/ may import (README, "How the code is laid out");
# worker.errors is open to all.
LAYERS: dict[str, set[str]] = {
    "cli": {"api", "web", "batch", "job", "storage", "provider", "limits", "render", "infra"},
    "web": {"api", "batch", "job", "provider", "limits", "render", "infra"},
    "api": {"batch", "job", "render", "infra"},
    "batch": {"job", "render", "infra"},
    "job": {"provider", "render", "limits", "storage", "infra"},
    "storage": set(),
    "provider": set(),
    "limits": set(),
    "render": set(),
    "infra": set(),
}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "worker" and len(parts) > 2 else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if (source := _package(module)) is not None
        for target in targets
        if (dest := _package(target)) not in (None, source) and dest not in LAYERS[source]
    )


def test_each_package_imports_only_what_its_layer_allows() -> None:
    packages = {p.name for p in (ROOT / "worker").iterdir() if (p / "__init__.py").exists()}
    assert set(LAYERS) == packages
    wrong = layer_violations(import_graph())
    assert not wrong, f"imports across layers the README does not allow: {wrong}"


def test_the_layer_check_sees_a_wrong_import() -> None:
    graph = {
        "worker.render.request": {"worker.job.record", "worker.errors"},
        "worker.job.submit": {"worker.render.request"},
    }
    assert layer_violations(graph) == ["worker.render.request -> worker.job.record"]
