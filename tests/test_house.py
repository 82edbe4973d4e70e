"""House rules that a reader can check by counting: no function over 80 lines of code.

A function's lines run from its `def` to its last line, its docstring left out
(comments and blank lines count: they are read too). Nested functions count
on their own and inside the function around them.
"""

import ast
import pathlib

import pytest

import keras_hyperbolic

PACKAGE = pathlib.Path(keras_hyperbolic.__file__).parent
LIMIT = 80


def _code_lines(node):
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def long_functions(paths, root=PACKAGE, limit=LIMIT):
    """`["path:line name (n lines)", ...]`: the functions in `paths` over `limit` lines."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = _code_lines(node)
                if lines > limit:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} "
                                 f"({lines} lines)")
    return found


def _part(name):
    """The package's modules: `tasks/`, `cli.py`, or the rest."""
    every = sorted(PACKAGE.rglob("*.py"))
    tasks = [p for p in every if p.relative_to(PACKAGE).parts[0] == "tasks"]
    cli = [PACKAGE / "cli.py"]
    return {"tasks": tasks, "cli": cli,
            "rest": [p for p in every if p not in tasks and p not in cli]}[name]


def test_the_check_counts_code_not_the_docstring(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(LIMIT - 1))
    docstring = '    """Doc.\n\n    More doc.\n    """\n'
    module = tmp_path / "module.py"
    module.write_text(f"def at_limit():\n{docstring}{body}\n\n"
                      f"def over():\n{docstring}{body}    return 0\n")
    assert long_functions([module], root=tmp_path) == ["module.py:87 over (81 lines)"]


@pytest.mark.parametrize("part", [
    "rest",
    "tasks",
    "cli",
])
def test_no_function_over_80_lines_of_code(part):
    found = long_functions(_part(part))
    assert found == [], f"functions over {LIMIT} lines of code (docstring aside): {found}"
