"""The install files agree with each other and README tells the truth about them."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

# conda package names that differ from their PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}
REQ = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(>=\s*[0-9][^\s#]*)?")


def _parse(requirement: str) -> tuple[str, str]:
    match = REQ.match(requirement)
    assert match, f"cannot read requirement {requirement!r}"
    name = match.group(1).lower().replace("_", "-")
    return CONDA_TO_PYPI.get(name, name), (match.group(2) or "").replace(" ", "")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _environment_requirements() -> dict[str, str]:
    """The conda and pip entries of environment.yml, read without a YAML library."""
    entries: dict[str, str] = {}
    in_deps = False
    for raw in (REPO / "environment.yml").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        if not in_deps or not line.strip().startswith("- "):
            continue
        item = line.strip()[2:].strip()
        if item in ("pip", "pip:") or item.startswith("-") or item.startswith("python"):
            continue
        name, bound = _parse(item)
        entries[name] = bound
    return entries


def test_dependencies_have_lower_bounds_only():
    project = _pyproject()["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert "==" not in requirement and "<" not in requirement, f"{requirement}: use a lower bound only"
        assert ">=" in requirement, f"{requirement}: give a lower bound"


def test_environment_yml_matches_pyproject():
    project = _pyproject()["project"]
    wanted = dict(_parse(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    assert _environment_requirements() == wanted


def test_environment_yml_comments_every_entry():
    for raw in (REPO / "environment.yml").read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("- ") and _environment_requirements().get(_parse(stripped[2:])[0]) is not None:
            assert "#" in raw, f"environment.yml entry without a comment saying what needs it: {raw!r}"


def test_console_script_points_at_a_callable():
    target = _pyproject()["project"]["scripts"]["cnncourse"]
    module_name, function_name = target.split(":")
    module = __import__(module_name, fromlist=[function_name])
    assert callable(getattr(module, function_name))


def test_readme_gives_the_install_and_test_commands_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in readme and 'pip install --quiet -e ".[dev]"' in ci
    assert "conda env create -f environment.yml" in readme
    assert re.search(r"^pytest$", readme, re.M), "README must give the bare `pytest` test command"
    assert re.search(r"^(CNNCOURSE_REQUIRE_SITE=1 )?pytest$", ci, re.M), ".ci/run must run README's test command"
    assert "jupyter lab notebooks" in readme
