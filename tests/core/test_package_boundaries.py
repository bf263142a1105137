"""The library's architecture, checked on its source (nothing is imported): lensflow.expertlens and
lensflow.lfp never import each other, lensflow.core imports neither, and no module is over
MAX_LINES lines. Imports are found anywhere in a module (top level or inside functions), relative
or absolute."""

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "workflow" / "lensflow"
MAX_LINES = 300
# package -> the lensflow packages it must not import
FORBIDDEN = {
    "core": {"expertlens", "lfp"},
    "expertlens": {"lfp"},
    "lfp": {"expertlens"},
}


def _modules():
    return sorted(LIB.rglob("*.py"))


def _dotted(path: Path, lib: Path = LIB) -> list[str]:
    """['lensflow', ...] of the module at `path` (a package's __init__ is the package itself)."""
    parts = ["lensflow", *path.relative_to(lib).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported_modules(path: Path, lib: Path = LIB) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every module `path` imports, relative imports resolved; for
    `from X import a` both X and X.a (a may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _dotted(path, lib) if path.name == "__init__.py" else _dotted(path, lib)[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . (level 1: this package), from .. (its parent), ...
                base = package[:len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def crossings(path: Path, lib: Path = LIB) -> list[str]:
    """Messages for the imports of `path` that cross a package boundary."""
    own = _dotted(path, lib)
    if len(own) < 2 or own[1] not in FORBIDDEN:
        return []
    out = []
    for line, name in imported_modules(path, lib):
        parts = name.split(".")
        if len(parts) >= 2 and parts[0] == "lensflow" and parts[1] in FORBIDDEN[own[1]]:
            out.append(f"{path.relative_to(lib.parent)}:{line}: lensflow.{own[1]} imports {name}")
    return out


def test_the_three_packages_exist():
    assert {p.name for p in LIB.iterdir() if (p / "__init__.py").is_file()} >= set(FORBIDDEN)


def test_no_import_crosses_between_the_papers_or_into_core():
    problems = sorted({m for path in _modules() for m in crossings(path)})
    assert problems == [], "\n".join(problems)


def test_no_library_module_over_the_size_limit():
    too_long = [f"{path.relative_to(LIB.parent)}: {n} lines (limit {MAX_LINES})"
                for path in _modules() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert too_long == [], "\n".join(too_long)


@pytest.mark.parametrize("source, package, bad", [
    ("from lensflow.lfp.sae.model import SparseAutoencoder\n", "expertlens", True),
    ("def f():\n    from ...lfp import claims\n", "expertlens/causal", True),
    ("from .. import lfp\n", "expertlens/figures", False),  # lensflow.expertlens.lfp: no such crossing
    ("from ... import lfp\n", "expertlens/figures", True),
    ("import lensflow.expertlens.pipeline as p\n", "lfp", True),
    ("from ..expertlens import claims\n", "core/llm", False),  # lensflow.core.expertlens
    ("from ...expertlens import claims\n", "core/llm", True),
    ("from lensflow.core.io import atomic_path\n", "lfp/finetune", False),
    ("from ..sae.model import SparseAutoencoder\n", "lfp/probes", False),
])
def test_the_check_sees_relative_absolute_and_nested_imports(tmp_path, source, package, bad):
    """The checker itself: a module written into a stand-in library is flagged exactly when it crosses."""
    lib = tmp_path / "lensflow"
    folder = lib / package
    folder.mkdir(parents=True)
    (folder / "mod.py").write_text(source)
    assert bool(crossings(folder / "mod.py", lib)) == bad
