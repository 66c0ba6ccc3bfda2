"""The package's layering, read from its source: no import circles, and the library never reaches up.

The imports are read with :mod:`ast`, not by importing, so every import counts: those at the top of a
module and those inside functions (deferred to keep start-up light, or to break a circle). A circle
that only closes through a function-level import is still a circle: change one module and a module
it never names can break. ``if TYPE_CHECKING:`` blocks are ignored (they never run).

The layers, lowest first (ARCHITECTURE.md): data and nets < methods < models and inference < tuning
and refine < training and batch < cli and _napari. The library (everything outside ``_napari`` and
``cli``) never imports ``_napari``, ``cli``, napari or Qt.
"""

import ast
from pathlib import Path

PACKAGE = "napari_deepcolor"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE
#: the adapters over the library: nothing below them may import them
ADAPTERS = (f"{PACKAGE}._napari", f"{PACKAGE}.cli")
#: third-party GUI packages only the adapters may import
GUI_PACKAGES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "magicgui")


def module_names() -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of the package."""
    modules = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree):
    """Every Import/ImportFrom node, at any depth, outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name of what a ``from ... import`` reads from."""
    if not node.level:
        return node.module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    base = package.split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(module: str, path: Path, modules=()) -> set[str]:
    """The absolute dotted names ``module`` imports, at any depth.

    ``from a import b`` gives ``a.b`` when that is one of ``modules`` (a submodule), else ``a``.
    """
    names = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        target = _absolute(module, path, node)
        for alias in node.names:
            names.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
    return names


def import_graph() -> dict[str, set[str]]:
    """``{module: the package's modules it imports}``."""
    modules = module_names()
    return {module: {name for name in imported_names(module, path, modules) if name in modules and name != module}
            for module, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _within(module: str, roots) -> bool:
    return any(module == root or module.startswith(root + ".") for root in roots)


def test_the_import_walker_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert f"{PACKAGE}.errors" in graph[f"{PACKAGE}.models.files"]  # module level, relative
    assert f"{PACKAGE}.inference" in graph[f"{PACKAGE}.models.bioimageio_export"]  # inside a function
    assert f"{PACKAGE}.models.files" in graph[f"{PACKAGE}.inference"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_among_the_package_modules():
    found = circles(import_graph())
    assert not found, "modules that import each other in a circle (counting imports inside functions): " + \
        "; ".join(" <-> ".join(c) for c in found)


def test_the_library_never_imports_the_cli_the_widgets_or_a_gui():
    modules = module_names()
    offenders = []
    for module, path in modules.items():
        if _within(module, ADAPTERS):
            continue
        for name in imported_names(module, path, modules):
            if _within(name, ADAPTERS) or name.split(".")[0] in GUI_PACKAGES:
                offenders.append(f"{module} imports {name}")
    assert not offenders, "the library must not reach the adapters or a GUI: " + "; ".join(sorted(offenders))


#: modules longer than this say why in their docstring ("Long on purpose: ...")
LONG_MODULE_LINES = 600


def test_long_modules_say_why_they_are_long():
    unexplained = []
    for module, path in module_names().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > LONG_MODULE_LINES and "Long on purpose" not in (ast.get_docstring(ast.parse(text)) or ""):
            unexplained.append(f"{module} ({text.count(chr(10))} lines)")
    assert not unexplained, ("split these modules along their seams, or say in their docstring why they are long "
                             "('Long on purpose: ...'): " + ", ".join(unexplained))
