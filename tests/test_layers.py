"""Imports point one way: the serving app on top, then calls, the bot and adapters, with asr/ and compliance_rules/
at the bottom; checked by walking every module's imports, directly and through the modules they import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("voicebot", "recordings", "scripts_library", "asr", "compliance_rules")


def module_files() -> dict[str, Path]:
    """Every module of the project, by dotted name."""
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


FILES = module_files()


def within(name: str, prefix: str) -> bool:
    """Whether a dotted module name is `prefix` or lies below it."""
    return name == prefix or name.startswith(prefix + ".")


def imported_names(tree: ast.Module, package: str) -> set[str]:
    """The dotted names a module's imports name anywhere in its body, relative ones resolved against `package`."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*kept, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def direct_imports(name: str) -> set[str]:
    """The project modules one module imports, with the packages above them (importing runs their __init__)."""
    path = FILES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = imported_names(ast.parse(path.read_text(encoding="utf-8")), package)
    parents = {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}
    return {m for m in found | parents if m in FILES and m != name}


def import_chains(name: str) -> dict[str, list[str]]:
    """Every project module `name` imports, directly or not, each with one chain of imports that reaches it."""
    chains = {name: [name]}
    todo = [name]
    while todo:
        current = todo.pop()
        for imported in sorted(direct_imports(current)):
            if imported not in chains:
                chains[imported] = [*chains[current], imported]
                todo.append(imported)
    return chains


RULES = [
    ("voicebot.adapters", "voicebot.web"),
    ("voicebot.bot", "voicebot.web"),
    ("voicebot.call", "voicebot.web"),
    ("voicebot.call", "voicebot.adapters"),
    *[(bottom, other) for bottom in ("asr", "compliance_rules") for other in PACKAGES if other != bottom],
]


@pytest.mark.parametrize(("below", "above"), RULES)
def test_no_module_imports_the_layer_above_it(below: str, above: str) -> None:
    modules = [m for m in FILES if within(m, below)]
    assert modules, f"no modules under {below}"
    broken = [" -> ".join(chain) for m in modules for reached, chain in import_chains(m).items()
              if within(reached, above)]
    assert not broken, f"{below} must not import {above}; pass what it needs as arguments instead: {broken}"


def test_the_walk_sees_the_top_reach_down() -> None:
    chains = import_chains("voicebot.web.app")
    assert {"voicebot.web.keys", "voicebot.adapters.twilio", "voicebot.call", "asr.vosk_engine"} <= chains.keys()


@pytest.mark.parametrize(("source", "names"), [
    ("import voicebot.web.app", {"voicebot.web.app"}),
    ("from voicebot.web.keys import BOARD", {"voicebot.web.keys", "voicebot.web.keys.BOARD"}),
    ("from ..web import keys", {"voicebot.web", "voicebot.web.keys"}),
    ("from . import pbx", {"voicebot.adapters", "voicebot.adapters.pbx"}),
    ("def f():\n    from voicebot.web import app", {"voicebot.web", "voicebot.web.app"}),
])
def test_imports_are_found_anywhere_and_relative_ones_resolved(source: str, names: set[str]) -> None:
    assert imported_names(ast.parse(source), "voicebot.adapters") == names
