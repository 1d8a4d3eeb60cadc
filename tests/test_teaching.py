"""What teachers rely on: grading a learner's notebook, README's list of exercises, the citation file,
the content licence, and the pinned environment for a term."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

import cnncourse
from cnncourse.exercises import all_exercises, nb01
from cnncourse.exercises import grade as grading

REPO = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _cell(source: str, outputs=()):
    nbformat = pytest.importorskip("nbformat")
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": text}, execution_count=1)
                    for text in outputs]
    return cell


def _solution(path: Path, name: str):
    spec = importlib.util.spec_from_file_location("course_solutions_teaching", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_grade_runs_a_learners_notebook_in_quick_mode(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    solutions = REPO / "solutions" / "nb01.py"
    if not solutions.exists():
        pytest.skip("solutions/ was removed from this copy")
    number = {exercise.name: f"1.{k}" for k, exercise in enumerate(nb01.EXERCISES, 1)}
    solved, stub = (next(e for e in nb01.EXERCISES if e.name == name) for name in ("conv_params", "stack_output_size"))
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(f"### Exercise {number[solved.name]}: {solved.title}"),
        # the reference solution, defined only if the kernel runs in quick mode
        _cell('import os\nassert os.environ["CNNCOURSE_QUICK"] == "1"\n' + solutions.read_text()),
        _cell(f"from cnncourse.exercises import nb01\n\nnb01.{solved.check.__name__}({solved.name})"),
        _cell('raise RuntimeError("a broken cell")'),
        nbformat.v4.new_markdown_cell(f"### Exercise {number[stub.name]}: {stub.title}"),
        _cell(stub.stub),
        # a stored output from the learner's own run must not count
        _cell(f"nb01.{stub.check.__name__}({stub.name})", outputs=["✓ passed (6 cases)"]),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "learner.ipynb"
    nbformat.write(notebook, path)

    rows = {row[0]: row for row in grading.grade(path, timeout=300)}

    assert list(rows) == list(number.values())
    assert [row[1] for row in rows.values()] == [exercise.title for exercise in nb01.EXERCISES]
    passed = rows.pop(number[solved.name])
    assert passed[2:] == (True, solved.check(_solution(solutions, solved.name)).message)
    assert passed[3].startswith("✓ passed")
    blank = rows.pop(number[stub.name])
    assert blank[2:] == (False, stub.check(stub.stub_answer()).message)
    assert blank[3].startswith("✗ not done yet")
    for row in rows.values():
        assert row[2:] == (False, "no check cell for this exercise in the notebook")

def test_grade_reads_what_a_check_cell_showed():
    ran = {"execution_count": 3}
    passed = dict(ran, outputs=[{"output_type": "execute_result", "data": {"text/plain": "✓ passed (5 cases)"}}])
    raised = dict(ran, outputs=[{"output_type": "error", "ename": "NameError",
                                 "evalue": "name 'conv_params' is not defined", "traceback": []}])
    assert grading._shown(passed, 1, "") == [(True, "✓ passed (5 cases)")]
    assert grading._shown(raised, 1, "") == [(False, "the check cell raised NameError: name 'conv_params' is not defined")]
    assert grading._shown(dict(ran, outputs=[]), 1, "")[0][1].startswith("the check cell showed no result")
    assert grading._shown({"execution_count": None, "outputs": []}, 1, "stopped") == [(False, "stopped")]


def test_grade_command_prints_a_table_and_a_total(monkeypatch, capsys):
    rows = [("2.1", "BatchNorm's forward pass in training mode", True, "✓ passed (3 cases)"),
            ("2.2", "The training loop", False, "✗ not done yet: ...")]
    monkeypatch.setattr(grading, "grade", lambda path, timeout=600: rows)
    assert grading.main(["a.ipynb", "b.ipynb"]) == 0
    out = capsys.readouterr().out
    assert out.count("1 of 2 passed") == 2 and "Total: 2 of 4 exercises passed in 2 notebook(s)" in out
    assert re.search(r"2\.2 +FAILED +The training loop\n +✗ not done yet", out)


def test_readme_lists_the_packages_exercises():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- exercises:start -->\n(.*?)\n<!-- exercises:end -->", readme, re.S)
    assert block, "README's For teachers section needs its exercises block"
    assert block.group(1) == grading.exercise_list(), (
        "README's list of exercises is out of date: paste `python -m cnncourse.exercises.grade --list`")
    for module, exercises in all_exercises().items():
        assert f"solutions/{module}.py" in block.group(1) and len(exercises) >= 4
    section = readme.split("## For teachers", 1)[1].split("\n## ", 1)[0]
    assert "python -m cnncourse.exercises.grade path/to/learner.ipynb" in section
    assert 'pip install -e ".[dev]" -c constraints.txt' in section


def _cff() -> dict:
    text = (REPO / "CITATION.cff").read_text()
    try:
        import yaml
    except ImportError:   # a minimal reader for the top-level `key: value` lines
        return {m.group(1): m.group(2).strip().strip('"') for m in re.finditer(r"^([\w-]+):[ \t]*(.*)$", text, re.M)}
    return yaml.safe_load(text)


def test_citation_file_matches_the_package():
    cff = _cff()
    assert str(cff["cff-version"]) == "1.2.0"
    assert str(cff["version"]) == cnncourse.__version__ == PYPROJECT["project"]["version"]
    assert cff["repository-code"] == PYPROJECT["project"]["urls"]["Repository"]
    assert cff["license"] == "MIT" and str(cff["date-released"]) == "2026-11-29"
    assert cff["title"] and cff["message"]
    if isinstance(cff.get("authors"), list):
        assert cff["authors"] == [{"name": "cnncourse authors"}]
        assert "CC BY 4.0" in cff["abstract"] and "LICENSE-CONTENT.md" in cff["abstract"]


def test_content_licence_is_cc_by_and_named_in_readme():
    licence = (REPO / "LICENSE-CONTENT.md").read_text()
    assert "CC BY 4.0" in licence and "https://creativecommons.org/licenses/by/4.0/" in licence
    assert "LICENSE" in licence and "attribute" in licence.lower()
    readme = (REPO / "README.md").read_text()
    assert "LICENSE-CONTENT.md" in readme and "CITATION.cff" in readme and "CC BY 4.0" in readme


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement.lower())


def _version(text: str):
    try:
        from packaging.version import Version
        return Version(text)
    except ImportError:
        return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:4])


def _lower_bounds() -> dict:
    """Every dependency of pyproject.toml (base and dev) and environment.yml: name -> its lower bounds."""
    project = PYPROJECT["project"]
    bounds: dict = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, bound = re.match(r"^([A-Za-z0-9_.\-]+)\s*(?:>=\s*([0-9][^\s,;]*))?", requirement).groups()
        bounds.setdefault(_name(name), []).append(bound)
    for line in (REPO / "environment.yml").read_text().split("\ndependencies:", 1)[1].splitlines():
        item = re.match(r"^\s*-\s+([A-Za-z0-9_.\-]+)\s*(?:>=\s*([0-9][^\s#]*))?", line.split("#", 1)[0])
        # not packages to pin: the interpreter, the installer, the editable install of the course
        if item and item.group(1) not in ("python", "pip") and not item.group(1).startswith("-"):
            name = {"pytorch": "torch"}.get(item.group(1), item.group(1))
            bounds.setdefault(_name(name), []).append(item.group(2))
    return bounds


def test_constraints_pin_every_dependency_at_or_above_its_lower_bound():
    text = (REPO / "constraints.txt").read_text()
    pins = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9_.\-]*)==([0-9][0-9A-Za-z.+!\-]*)", line)
        assert match, f"constraints.txt: not a comment or name==version: {line!r}"
        pins[_name(match.group(1))] = match.group(2)
    bounds = _lower_bounds()
    assert {"torch", "torchvision", "numpy", "pytest", "nbval", "jupytext", "torchsummary"} <= set(bounds)
    for name, lower in bounds.items():   # the lower bounds in pyproject.toml and environment.yml
        assert name in pins, f"constraints.txt does not pin {name}"
        for bound in filter(None, lower):
            assert _version(pins[name]) >= _version(bound), f"{name}=={pins[name]} is below >={bound}"
    assert "cnncourse" not in pins, "freeze with --exclude-editable: the course itself is not pinned"
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "python -m pip freeze --exclude-editable" in header
    assert "(grep '^#' constraints.txt; python -m pip freeze --exclude-editable) > constraints.new" in header
    assert 'pip install -e ".[dev]" -c constraints.txt' in header
    assert "nvidia-*" in header


# --------------------------------------------------------------------------------------- one sitting per lesson
def _lesson_budget():
    import importlib.util
    spec = importlib.util.spec_from_file_location("lesson_budget", REPO / "scripts" / "lesson_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUDGET = _lesson_budget()


def test_readme_lesson_table_is_measured_from_the_notebooks():
    assert BUDGET.main(["--check"]) == 0, "run python scripts/lesson_budget.py --readme"


@pytest.mark.parametrize("path", BUDGET.lessons(), ids=lambda p: p.name[:2])
def test_each_lesson_fits_one_sitting(path):
    measured = BUDGET.measure(path)
    for key, limit in BUDGET.LIMITS.items():
        assert measured[key] <= limit, f"{path.name}: {key} {measured[key]:.0f} > {limit}"


def test_the_budget_counts_what_it_says():
    import json
    import tempfile
    cells = [{"cell_type": "markdown", "source": "# Exercise 1.1 Two words\n[a link](http://x) ![badge](y.svg)"},
             {"cell_type": "code", "source": "x = 1\n# a comment\n\ny = 2\n"}]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "99_test.ipynb"
        path.write_text(json.dumps({"cells": cells}))
        measured = BUDGET.measure(path, live_minutes=3.0)
    assert (measured["words"], measured["code_lines"], measured["exercises"]) == (6, 2, 1)
    assert measured["minutes"] == pytest.approx(6 / 150 + 2 / 10 + 3.0 + 8)


# --------------------------------------------------------------------------------------- open experiments, teacher's guide
TEACHERS = REPO / "TEACHERS.md"
TEACHERS_PARTS = ("**What it asks.**", "**What to record.**", "**What a good answer shows.**")


def _markdown_cells(path: Path):
    import json
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            yield "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("path", BUDGET.lessons(), ids=lambda p: p.name[:2])
def test_each_lesson_ends_with_an_open_experiment(path):
    headings = [line for text in _markdown_cells(path) for line in text.splitlines()
                if line.startswith("## Experiment")]
    assert headings, f"{path.name} has no markdown heading starting '## Experiment' (its open experiment)"


def _teachers_sections(text: str) -> dict:
    """A teacher's guide's lesson sections: "NN" -> the section's text up to the next "## " heading."""
    return {match.group(1): match.group(2)
            for match in re.finditer(r"^## Lesson (\d\d)\b(.*?)(?=^## |\Z)", text, re.S | re.M)}


def test_teachers_guide_has_no_placeholders():
    text = TEACHERS.read_text()
    assert "<!-- lesson" not in text, "TEACHERS.md still holds a `<!-- lesson NN -->` placeholder"


@pytest.mark.parametrize("path", BUDGET.lessons(), ids=lambda p: p.name[:2])
def test_teachers_guide_has_a_full_section_per_lesson(path):
    sections = _teachers_sections(TEACHERS.read_text())
    number = path.name[:2]
    assert number in sections, f"TEACHERS.md has no section '## Lesson {number}' for {path.name}"
    missing = [part for part in TEACHERS_PARTS if part not in sections[number]]
    assert not missing, f"TEACHERS.md's section for lesson {number} lacks {', '.join(missing)}"


def test_teachers_guide_reading_finds_what_is_missing():
    sections = _teachers_sections("# Guide\n\n## Lesson 01: a - b?\n\n**What it asks.** x\n\n**What to record.** y\n\n"
                                  "## Lesson 02: c - d?\n\n**What it asks.** x\n\n**What to record.** y\n\n"
                                  "**What a good answer shows.**\n- z\n\n## Lesson 03 placeholder\n")
    assert set(sections) == {"01", "02", "03"}
    assert [part in sections["01"] for part in TEACHERS_PARTS] == [True, True, False]
    assert all(part in sections["02"] for part in TEACHERS_PARTS)
