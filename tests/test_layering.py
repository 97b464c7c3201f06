"""The import rules between the suite's packages, as one table, checked two ways: statically over the
source of every module (``ast``: the import graph, lazy imports inside functions included) and at
run time in fresh interpreters (what importing a layer actually loads). A third test plants a
forbidden import in a copy of the sources and expects the checker to report exactly that one.

A module belongs to the most specific layer naming it: the light cores of ``datamodules`` and
``models`` by their module names, every other layer by its package (``experiments.report.tables``
is in ``experiments.report``).
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("measures", "datamodules", "models", "experiments")
ENTRY_POINTS = ("run.py",)

# The light cores, by module: what models may import of ``datamodules`` (no pandas, pyarrow or
# Lightning behind it), and what reports may import of ``models`` (the zoo as data, no torch).
CORE, REGISTRY = "datamodules core", "models registry"
LIGHT = {CORE: ("datamodules", "datamodules.schema", "datamodules.sampling"), REGISTRY: ("models", "models.registry")}
FRAMEWORKS = ("torch", "pytorch_lightning", "lightning")
LIGHTNING = ("pytorch_lightning", "lightning")
TABLES = ("pandas", "pyarrow")


@dataclass(frozen=True)
class Layer:
    may_import: tuple[str, ...] = ()  # other layers it may import (its own modules always)
    must_not_load: tuple[str, ...] = ()  # third-party packages, also through every module it imports


# The rules. Read downward: a layer imports only layers listed for it, so the table is the order.
RULES = {
    "measures": Layer((), (*FRAMEWORKS, *TABLES)),
    REGISTRY: Layer((), (*FRAMEWORKS, *TABLES)),
    CORE: Layer(("measures",), (*LIGHTNING, *TABLES)),
    "datamodules": Layer((CORE, "measures")),
    "models": Layer((REGISTRY, CORE, "measures"), TABLES),
    "experiments.run": Layer(("models", REGISTRY, "datamodules", CORE, "measures")),
    "experiments.report": Layer((REGISTRY, "measures"), FRAMEWORKS),
    "experiments.sweep": Layer(("experiments.run", "experiments.report", "measures")),
    "experiments.reference": Layer(
        ("experiments.run", "experiments.report", "models", REGISTRY, "datamodules", CORE, "measures")
    ),
    "experiments.predict": Layer(("experiments.run", "models", REGISTRY, "datamodules", CORE, "measures")),
    "experiments.export": Layer(
        ("experiments.predict", "experiments.run", "models", REGISTRY, "datamodules", CORE, "measures")
    ),
    "experiments.benchmark": Layer(
        (
            "experiments.export",
            "experiments.predict",
            "experiments.reference",
            "experiments.run",
            "experiments.report",
            "models",
            REGISTRY,
            "datamodules",
            CORE,
            "measures",
        )
    ),
    "experiments": Layer(),  # the package's __init__ alone
    "run": Layer(("experiments.run",)),  # run.py, which nothing imports
}


class Source(NamedTuple):
    text: str
    is_package: bool


class Violation(NamedTuple):
    importer: str
    imported: str
    rule: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.imported}: {self.rule}"


def read_tree(root: Path = REPO) -> dict[str, Source]:
    """Module name -> its source, for every module of ``PACKAGES`` and ``ENTRY_POINTS``."""
    files = [path for package in PACKAGES for path in sorted((root / package).rglob("*.py"))]
    files += [root / name for name in ENTRY_POINTS]
    tree = {}
    for path in files:
        parts = path.relative_to(root).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        tree[".".join(parts[:-1] if is_package else parts)] = Source(path.read_text(), is_package)
    return tree


def layer_of(module: str) -> str | None:
    light = [name for name, modules in LIGHT.items() if module in modules]
    if light:
        return light[0]
    owners = [name for name in RULES if module == name or module.startswith(name + ".")]
    return max(owners, key=len) if owners else None


@functools.lru_cache(maxsize=None)
def _parsed(text: str) -> ast.Module:
    return ast.parse(text)


def _lazy_names(source: str) -> dict[str, str]:
    """A package's ``_HOMES`` table (names it loads from its modules on first use, see ``datamodules``)."""
    for node in _parsed(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_HOMES" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _loaded_on_use(source: str, name: str) -> bool:
    """Whether ``name`` of a package comes from its module ``__getattr__``: it is bound nowhere at its top."""
    body = _parsed(source).body
    if not any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for node in body):
        return False
    bound = set()
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    return name not in bound


def imports(module: str, tree: dict[str, Source]) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import statement of ``module``, wherever it stands; a
    ``from package import name`` is the submodule ``name`` where there is one, and a name the package
    loads on first use is the module that holds it (``package.name``, of the package's own layer,
    where the package does not say which)."""
    source = tree[module]
    for node in ast.walk(_parsed(source.text)):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if source.is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            lazy = _lazy_names(tree[base].text) if base in tree else {}
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule not in tree and base in tree and not _loaded_on_use(tree[base].text, alias.name):
                    submodule = base
                yield lazy.get(alias.name, submodule), node.lineno


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def violations(tree: dict[str, Source]) -> list[Violation]:
    """Every import statement that breaks a rule, once, with each rule it breaks."""
    first_party = {name.split(".")[0] for name in tree}
    edges = {module: list(imports(module, tree)) for module in tree}
    broken: dict[tuple[str, str, int], list[str]] = {}
    for module, targets in edges.items():
        layer = layer_of(module)
        for target, line in targets:
            if target.split(".")[0] not in first_party:
                continue
            if target.split(".")[-1] == "__main__":
                broken.setdefault((module, target, line), []).append("nothing imports a __main__ module")
            elif layer_of(target) != layer and layer_of(target) not in RULES[layer].may_import:
                broken.setdefault((module, target, line), []).append(f"{layer} may not import {layer_of(target)}")
    for layer, rule in RULES.items():
        if not rule.must_not_load:
            continue
        for module in sorted(_reached([m for m in tree if layer_of(m) == layer], edges, tree)):
            for target, line in edges[module]:
                if target.split(".")[0] in rule.must_not_load:
                    broken.setdefault((module, target, line), []).append(
                        f"{layer} must not load {target.split('.')[0]}"
                    )
    return [
        Violation(module, target, "; ".join(dict.fromkeys(rules)), line)
        for (module, target, line), rules in broken.items()
    ]


def _reached(start: list[str], edges: dict[str, list[tuple[str, int]]], tree: dict[str, Source]) -> set[str]:
    """Every module of ``tree`` that importing ``start`` may run: what they import, and the
    packages around each (``import a.b.c`` runs ``a`` and ``a.b`` first)."""
    seen, todo = set(), list(start)
    while todo:
        module = todo.pop()
        if module in seen or module not in tree:
            continue
        seen.add(module)
        todo += _parents(module) + [target for target, _ in edges[module]]
    return seen


# -- the tests ---------------------------------------------------------------------------------------


def test_the_rules_are_an_order_without_cycles():
    placed: list[str] = []
    while len(placed) < len(RULES):
        ready = [name for name, rule in RULES.items() if name not in placed and set(rule.may_import) <= set(placed)]
        assert ready, f"the layers {sorted(set(RULES) - set(placed))} import each other"
        placed += ready


def test_every_module_belongs_to_a_layer_and_keeps_its_rules():
    tree = read_tree()
    assert [m for m in tree if layer_of(m) is None] == []
    assert {module for modules in LIGHT.values() for module in modules} <= set(tree)
    found = violations(tree)
    assert not found, "\n".join(map(str, found))


@pytest.mark.parametrize(
    "module, planted, expected",
    [
        ("experiments.report.naming", "import torch", ("torch", "experiments.report must not load torch")),
        (
            "experiments.report.naming",
            "from models import DeepFM",  # loaded on first use: models' own layer
            ("models.DeepFM", "experiments.report may not import models"),
        ),
        (
            "experiments.reference.data",
            "from experiments.benchmark import machine",
            ("experiments.benchmark.machine", "experiments.reference may not import experiments.benchmark"),
        ),
        (
            "experiments.benchmark.peers",
            "from experiments.reference.__main__ import MODELS",
            ("experiments.reference.__main__", "nothing imports a __main__ module"),
        ),
        (
            "models.base",
            "from experiments.run.objective import MAXIMISED",
            ("experiments.run.objective", "models may not import experiments.run"),
        ),
        (
            "datamodules.sampling",
            "import pytorch_lightning",
            ("pytorch_lightning", "datamodules core must not load pytorch_lightning"),
        ),
        (
            "datamodules.schema",
            "import pandas",  # the core, and so models
            ("pandas", "datamodules core must not load pandas; models must not load pandas"),
        ),
    ],
)
def test_the_checker_reports_a_planted_violation_and_only_that(module, planted, expected):
    tree = read_tree()
    text = tree[module].text + f"\n\ndef planted():\n    {planted}\n"  # lazily, inside a function: still seen
    tree[module] = tree[module]._replace(text=text)
    found = violations(tree)
    line = text.count("\n")
    assert [(v.importer, v.imported, v.rule, v.line) for v in found] == [(module, *expected, line)]


def test_each_package_docstring_names_what_it_may_import_and_must_not_load():
    tree = read_tree()
    for layer, rule in RULES.items():
        if layer not in tree or not tree[layer].is_package:
            continue
        doc = ast.get_docstring(_parsed(tree[layer].text)) or ""
        named = {other.split()[0] for other in rule.may_import} - {layer}  # a light core by its package's name
        assert [n for n in sorted(named) if not re.search(rf"``{re.escape(n)}(``|\.)", doc)] == [], layer
        forbidden = {"lightning" if p in LIGHTNING else p for p in rule.must_not_load}
        assert [p for p in sorted(forbidden) if p not in doc.lower()] == [], layer


# Layers imported at run time, each tuple in one fresh interpreter, in order, each checked as soon as
# it is imported. A later layer may forbid no more than the earlier ones in its interpreter, which
# would have failed first. (``models`` loads torch and Lightning, seconds of imports, and is checked
# statically only.)
RUNTIME_CHECKS = (("measures", REGISTRY, CORE), ("experiments.report",))
_LOADED = """
import importlib, json, sys
for modules, forbidden in json.loads(sys.argv[1]):
    for name in modules:
        importlib.import_module(name)
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(forbidden))))
"""


def test_importing_a_layer_loads_nothing_it_must_not():
    tree = read_tree()
    processes = []
    for layers in RUNTIME_CHECKS:
        for earlier, later in zip(layers, layers[1:]):
            assert set(RULES[later].must_not_load) <= set(RULES[earlier].must_not_load)
        steps = [
            ([m for m in tree if layer_of(m) == layer and not m.endswith("__main__")], RULES[layer].must_not_load)
            for layer in layers
        ]
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", _LOADED, json.dumps(steps)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    loaded = {}
    for layers, process in zip(RUNTIME_CHECKS, processes):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        loaded |= dict(zip(layers, map(json.loads, out.splitlines())))
    assert loaded == {layer: [] for layers in RUNTIME_CHECKS for layer in layers}
