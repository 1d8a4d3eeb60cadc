"""Static checks of the committed notebooks: their links, kernel, outputs and place in README."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LESSONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LABS = sorted((REPO / "notebooks" / "labs").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = LESSONS + LABS


def _name(path: Path) -> str:
    """notebooks/02_x.ipynb -> 02_x.ipynb, notebooks/labs/02_y.ipynb -> labs/02_y.ipynb"""
    return str(path.relative_to(REPO / "notebooks"))


def _source_of(path: Path) -> Path:
    return (REPO / "sources" / _name(path)).with_suffix(".py")
COLAB = re.compile(r"https://colab\.research\.google\.com/github/[^/\s]+/[^/\s]+/blob/main/(notebooks/[^)\s\"]+\.ipynb)")
IGNORE_TAGS = ("nbval-ignore-output", "nbval-skip", "nbval-raises-exception")


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_the_notebooks_exist_in_order():
    assert len(LESSONS) >= 7, [p.name for p in LESSONS]
    assert [p.name[:2] for p in LESSONS] == [f"{k:02d}" for k in range(1, len(LESSONS) + 1)]
    assert {p.name[:2] for p in LABS} <= {p.name[:2] for p in LESSONS}, "a lab belongs to a lesson of its number"


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_each_lab_and_its_lesson_link_to_each_other(path):
    lesson = next(p for p in LESSONS if p.name[:2] == path.name[:2])
    lesson_text = "".join(_source(c) for c in _load(lesson)["cells"] if c["cell_type"] == "markdown")
    lab_text = "".join(_source(c) for c in _load(path)["cells"] if c["cell_type"] == "markdown")
    assert f"labs/{path.name}" in lesson_text, f"{lesson.name} never links to its lab {path.name}"
    assert f"../{lesson.name}" in lab_text, f"{path.name} never links back to {lesson.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_colab_link_names_its_own_file(path):
    first_cells = "".join(_source(c) for c in _load(path)["cells"][:2])
    links = COLAB.findall(first_cells)
    assert links, f"{path.name}: no 'Open in Colab' link near the top"
    assert set(links) == {f"notebooks/{_name(path)}"}


def _build_script():
    import importlib.util
    spec = importlib.util.spec_from_file_location("build_notebooks", REPO / "scripts" / "build_notebooks.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_the_committed_notebook_is_built_from_its_source(path):
    import jupytext
    cells = jupytext.read(_source_of(path)).cells
    stored = _load(path)["cells"]
    assert [(c.cell_type, c.source) for c in cells] == [(c["cell_type"], _source(c)) for c in stored], \
        f"rebuild it: python scripts/build_notebooks.py {_name(path)[:-len('.ipynb')]}"


def test_jupytext_pairs_each_notebook_with_its_source():
    """jupytext.toml pairs notebooks/NN.ipynb with sources/NN.py (and notebooks/labs/NN.ipynb with
    sources/labs/NN.py), so `jupytext --sync` and JupyterLab's jupytext extension keep them together;
    the notebooks folder holds the lessons and the labs/ folder, nothing else; the build script builds
    exactly these."""
    from jupytext.config import load_jupytext_configuration_file
    from jupytext.paired_paths import paired_paths
    config = load_jupytext_configuration_file(str(REPO / "jupytext.toml"))
    for path in NOTEBOOKS:
        formats = config.default_formats(str(path))
        pairs = {fmt["extension"]: Path(p) for p, fmt in paired_paths(str(path), "ipynb", formats)}
        assert pairs[".py"] == _source_of(path)
    build = _build_script()
    assert [build.notebook_for(s) for s in build.all_sources()] == NOTEBOOKS
    assert sorted(p.name for p in (REPO / "notebooks").iterdir() if p.name not in (".ipynb_checkpoints",)) == \
        sorted([p.name for p in LESSONS] + (["labs"] if LABS else []))
    if LABS:
        assert sorted(p.name for p in (REPO / "notebooks" / "labs").iterdir()
                      if p.name not in (".ipynb_checkpoints",)) == [p.name for p in LABS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_the_repository_address_comes_from_pyproject(path):
    """Badges and Colab setup cells of source and notebook name the repository of pyproject's
    [project.urls]; the build rewrites them from it, so a fork or a move is a one-line change."""
    build = _build_script()
    slug = build.repository()
    source = _source_of(path).read_text()
    text = "".join(_source(c) for c in _load(path)["cells"][:3])
    for where in (source, text):
        assert f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{_name(path)}" in where
        assert f"https://github.com/{slug}\"" in where
    moved = build.with_repository(source, "someone/fork")
    assert "someone/fork/blob/main" in moved and "github.com/someone/fork\"" in moved and slug not in moved


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_kernelspec_is_python3(path):
    assert _load(path)["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_opens_with_title_setup_and_device_cells(path):
    cells = _load(path)["cells"]
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# ")
    code = [_source(c) for c in cells if c["cell_type"] == "code"]
    assert any("google.colab" in c and "pip" in c for c in code[:3]), "setup cell that installs only in Colab"
    assert any("describe_device" in c for c in code[:4]), "cell reporting the device"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_is_committed_with_outputs_and_strict_cells(path):
    code = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name}: run every cell before committing"
    strict = [c for c in code if c["outputs"] and not set(IGNORE_TAGS) & set(c.get("metadata", {}).get("tags", []))]
    assert len(strict) >= 5, f"{path.name}: only {len(strict)} strictly compared cells with output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_no_test_machinery_in_the_code_a_learner_reads(path):
    """nbval's markers are cell tags, never comments in a cell (issue 24)."""
    for cell in _load(path)["cells"]:
        assert "NBVAL" not in _source(cell), f"{path.name}: use the cell tag nbval-ignore-output instead"
    assert "NBVAL" not in _source_of(path).read_text()


def test_readme_table_lists_every_notebook():
    readme = (REPO / "README.md").read_text()
    for path in NOTEBOOKS:
        assert f"(notebooks/{_name(path)})" in readme, f"README's notebook table lacks {_name(path)}"
