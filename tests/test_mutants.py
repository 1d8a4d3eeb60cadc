"""The hand-made mutants of tests/mutants/mutants.json still apply to the code, and name real tests
(scripts/mutants.py runs them; it is too slow for every test run)."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutants_script", ROOT / "scripts" / "mutants.py")
mutants_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutants_script)
MUTANTS = mutants_script.load()


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m["name"] for m in MUTANTS])
def test_each_mutant_still_applies_and_names_real_tests(mutant):
    assert mutants_script.applies(mutant), f"{mutant['name']}: its original text is not in {mutant['file']} once"
    assert mutant["original"] != mutant["mutant"] and mutant["tests"]
    for test in mutant["tests"]:
        path, name = test.split("::")
        tree = ast.parse((ROOT / path).read_text())
        assert name in {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}, test


def test_mutant_names_are_unique():
    names = [m["name"] for m in MUTANTS]
    assert len(names) == len(set(names))
