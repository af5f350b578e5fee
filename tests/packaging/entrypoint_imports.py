"""Static import closure of an entrypoint module: which distributions its code can import.

Follows first-party imports (llmft, llmft_operator) file by file from the entrypoint, the way
`python -m` would load them, and collects the third-party top-level names on the way. Imports
inside functions count (they run sooner or later); imports under `if TYPE_CHECKING:` do not; those
in a `try:` whose handler catches ImportError (or a base of it) are recorded apart, as optional.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = (ROOT / "src", ROOT / "operator")
FIRST_PARTY = ("llmft", "llmft_operator")


@dataclass
class ImportClosure:
    """The first-party files reached from an entrypoint and the third-party names they import."""

    files: set[Path] = field(default_factory=set)
    # top-level import name -> "file:line" of one place that imports it unconditionally
    third_party: dict[str, str] = field(default_factory=dict)
    # the same for names imported only inside `try: ... except ImportError:`
    optional: dict[str, str] = field(default_factory=dict)


def module_file(name: str) -> Path | None:
    """The file a first-party module name loads: a module file or a package's __init__.py."""
    parts = name.split(".")
    for base in SOURCE_DIRS:
        stem = base.joinpath(*parts)
        if stem.with_suffix(".py").is_file():
            return stem.with_suffix(".py")
        if (stem / "__init__.py").is_file():
            return stem / "__init__.py"
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _catches_import_error(node: ast.Try) -> bool:
    names = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    for handler in node.handlers:
        caught = handler.type
        if caught is None:
            return True
        exprs = caught.elts if isinstance(caught, ast.Tuple) else [caught]
        if any(isinstance(e, ast.Name) and e.id in names for e in exprs):
            return True
    return False


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it sits in an ImportError-guarded `try`."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, guarded)
            return
        if isinstance(node, ast.Try) and _catches_import_error(node):
            for child in node.body:
                visit(child, True)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append((node, guarded))
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return found


def import_closure(entry_module: str) -> ImportClosure:
    """Everything `python -m entry_module` can import, following first-party code statically."""
    closure = ImportClosure()
    queue: list[str] = []

    def want(name: str) -> None:
        # Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c.
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            queue.append(".".join(parts[:i]))

    want(entry_module)
    if (main := module_file(entry_module)) is not None and main.name == "__init__.py":
        want(f"{entry_module}.__main__")
    seen: set[str] = set()
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        closure.files.add(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        for node, guarded in _imports(tree):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join([*base, node.module] if node.module else base)
                else:
                    mod = node.module or ""
                # `from pkg import sub` may name a submodule: follow it when it is a file.
                targets = [mod] + [
                    f"{mod}.{a.name}" for a in node.names if module_file(f"{mod}.{a.name}")
                ]
            for target in targets:
                top = target.split(".")[0]
                if top in FIRST_PARTY:
                    want(target)
                elif top and top not in sys.stdlib_module_names and top != "__future__":
                    (closure.optional if guarded else closure.third_party).setdefault(top, where)
    for name in closure.third_party:
        closure.optional.pop(name, None)
    return closure
