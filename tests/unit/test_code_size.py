"""No first-party module over 350 lines and no function over 50 lines.

Every ``.py`` file under the project's own folders is parsed with ``ast``, tests and
benchmarks included: a long module or function is as hard to read in a test as anywhere.

How lines are counted:
- a module is every line of the file, blank lines, comments and docstrings included;
- a function or method (sync or async, nested or not) runs from its ``def`` line to its
  last line, ``end_lineno - lineno + 1``. Decorators are not counted: they sit above the
  ``def`` and say how the function is used, not what it does. A nested function counts
  towards its parent as well as on its own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("worker", "tasks", "config", "simulator", "bench", "examples", "scripts", "tests")
SKIPPED_DIRS = {".venv", "venv", "build", "dist", "__pycache__", "node_modules", ".eggs"}
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 50


def first_party_files() -> Iterator[Path]:
    """Yield every first-party Python file, skipping virtualenvs and build output."""
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in parts):
                continue
            yield path


def oversized(path: Path) -> Iterator[str]:
    """Yield ``path:line name N lines`` for the module and each function over its limit."""
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(ROOT).as_posix()
    module_lines = len(text.splitlines())
    if module_lines > MAX_MODULE_LINES:
        yield f"{where}:1 <module> {module_lines} lines (limit {MAX_MODULE_LINES})"
    for node in ast.walk(ast.parse(text, filename=where)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                yield (
                    f"{where}:{node.lineno} {node.name} {length} lines (limit {MAX_FUNCTION_LINES})"
                )


def test_the_walk_finds_the_project_and_skips_the_virtualenv() -> None:
    files = [path.relative_to(ROOT).as_posix() for path in first_party_files()]
    assert "tests/unit/test_code_size.py" in files
    assert "config/settings.py" in files
    assert not [name for name in files if name.startswith(".venv/")]


def test_no_module_over_350_lines_and_no_function_over_50() -> None:
    problems = [problem for path in first_party_files() for problem in oversized(path)]
    assert not problems, "too long:\n" + "\n".join(problems)
