"""Size limits that keep the code readable: no source file over 450 lines, no function over 60."""

import ast

from tests.helpers import REPO

MAX_FILE_LINES, MAX_FUNCTION_LINES = 450, 60
PACKAGES = ("models", "datamodules", "experiments", "measures", "tests", "examples")


def source_files():
    yield REPO / "run.py"
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def too_long(files) -> tuple[list[str], list[str]]:
    """``(files over MAX_FILE_LINES, functions over MAX_FUNCTION_LINES)``, as ``path[:line name] (n)``."""
    long_files, long_functions = [], []
    for path in files:
        text = path.read_text()
        name = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
        if text.count("\n") > MAX_FILE_LINES:
            long_files.append(f"{name} ({text.count(chr(10))})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}:{node.lineno} {node.name} ({length})")
    return long_files, long_functions


def test_no_source_file_or_function_is_over_its_limit():
    assert too_long(source_files()) == ([], [])


def test_the_check_finds_a_long_file_and_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    planted = tmp_path / "planted.py"
    planted.write_text(f"def long():\n{body}\n" + "\n" * MAX_FILE_LINES)
    files, functions = too_long([planted])
    assert len(files) == 1 and functions == [f"{planted}:1 long ({MAX_FUNCTION_LINES + 1})"]
