"""Sphinx configuration of the course's site: the stored notebooks, README's pages and the API.

Build it from the repository root (no notebook is executed and nothing is fetched):

    sphinx-build -b html docs docs/_build/html

Sphinx reads only below docs/, so before it reads anything this file copies the lessons
(notebooks/NN_*.ipynb) and their labs (notebooks/labs/NN_*.ipynb) into docs/notebooks/ and writes
one API page per module into docs/api/ (both gitignored, both rewritten at every build). The copies
keep the repository's paths, so each page's Colab button opens ``notebooks/<name>.ipynb`` at the
address of ``[project.urls] Repository`` in pyproject.toml, and the download button gives the
notebook exactly as committed. What the site shows differently from the notebook is done here,
while Sphinx reads it: the Colab set-up cell is tagged ``remove-cell``, the Colab badge's image is
served from the site, and a note says at which scale the stored outputs were made. README's
sections and TEACHERS.md are included as they are (docs/*.md); their links to files of the
repository become links to the repository, their links between sections links between pages.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import tomllib
from importlib.util import find_spec
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))  # autodoc documents the package of this work tree

NOTEBOOKS = "notebooks"  # the copies, under docs/; the same path as in the repository
API = "api"              # the generated API pages, under docs/
BRANCH = "main"


def repository() -> tuple[str, str]:
    """(owner, name) from ``[project.urls] Repository`` in pyproject.toml, the one place for it."""
    url = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)/?", url)
    if not match:
        raise RuntimeError(f"pyproject.toml: Repository = {url!r} is not https://github.com/OWNER/NAME")
    return match.group(1), match.group(2)


OWNER, NAME = repository()
REPOSITORY_URL = f"https://github.com/{OWNER}/{NAME}"

# ------------------------------------------------------------------------------------ the project
project = "cnncourse"
author = "cnncourse authors"
copyright = "cnncourse authors; code MIT, course text CC BY 4.0"
html_title = "cnncourse: CNNs in PyTorch"

extensions = [
    "myst_nb",               # Markdown pages and the notebooks (MyST-Parser comes with it)
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",   # the package's Google-style docstrings (Args:, Returns:)
    "sphinx.ext.mathjax",
]
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# ---------------------------------------------------------------------- notebooks: stored outputs
nb_execution_mode = "off"   # the stored outputs, as committed; no kernel is started
nb_ipywidgets_js = {}       # no widget scripts from a CDN (the notebooks store no widget state)
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "alert"]
myst_heading_anchors = 3

# ----------------------------------------------------------------- MathJax 3, served from the site
# django-static-mathjax (the docs extra) vendors MathJax 3.2.2; its es5/ folder is copied into
# _static/mathjax/ when the build ends, so no page loads MathJax or its fonts from a CDN.
mathjax_path = "mathjax/tex-chtml.js"


def _mathjax_dir() -> Path:
    spec = find_spec("mathjax")
    folder = Path(spec.origin).parent / "static" / "mathjax" / "es5" if spec and spec.origin else None
    if folder is None or not (folder / "tex-chtml.js").is_file():
        raise RuntimeError("MathJax 3 not found: pip install -e \".[docs]\" (it brings django-static-mathjax)")
    return folder


# -------------------------------------------------------------------------------------- the theme
html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_favicon = "_static/favicon.svg"   # also spares the browser a request for /favicon.ico
html_context = {"default_mode": "auto"}  # light or dark as the reader's system says
html_copy_source = True       # _sources/notebooks/*.ipynb: what the download button gives
html_show_sourcelink = False
html_theme_options = {
    "repository_url": REPOSITORY_URL,
    "repository_branch": BRANCH,
    "path_to_docs": "",       # docs/notebooks/X.ipynb stands for notebooks/X.ipynb of the repository
    "use_repository_button": True,
    "use_download_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "home_page_in_toc": True,
    "show_toc_level": 2,
}

# ---------------------------------------------------------------------------- autodoc (API pages)
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# ------------------------------------------------------------- the scale of the stored outputs
# Every notebook is built by scripts/build_notebooks.py in quick mode, i.e. at the sample scale.
# A notebook that records another scale in its metadata ({"cnncourse": {"scale": "laptop"}}) gets
# that scale's note instead.
DEFAULT_SCALE = "sample"
SCALES = {
    "sample": ("The outputs on this page were made at the **sample** scale: quick mode "
               "(`CNNCOURSE_QUICK=1`), with the small samples of the data sets that ship inside the "
               "package, in about a minute on a laptop CPU. Accuracies and curves of its live runs are "
               "those of short runs on a few hundred images; run the notebook yourself (Colab, or your "
               "machine) for the real experiment."),
    "laptop": ("The outputs on this page were made at the **laptop** scale: the full data sets (Galaxy10 "
               "on its shipped sample), every live run sized for a few minutes on a laptop CPU."),
}


# =================================================================================== the notebooks
def course_notebooks() -> list[Path]:
    """The lessons (notebooks/NN_*.ipynb) in course order, each followed by its labs
    (notebooks/labs/NN_*.ipynb); a lab without its lesson comes last. Paths relative to the repository."""
    lessons = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    labs = sorted((REPO / "notebooks" / "labs").glob("[0-9][0-9]_*.ipynb"))
    ordered = []
    for lesson in lessons:
        ordered.append(lesson)
        ordered += [lab for lab in labs if lab.name[:2] == lesson.name[:2]]
    ordered += [lab for lab in labs if lab not in ordered]
    return [path.relative_to(REPO) for path in ordered]


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write only what changed, so that Sphinx's incremental build rereads only that."""
    if not path.is_file() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _sync_tree(target: Path, files: dict) -> None:
    """Make ``target`` hold exactly ``files`` (relative path -> bytes)."""
    for relative, data in files.items():
        _write_if_changed(target / relative, data)
    if target.is_dir():
        for path in sorted(target.rglob("*"), reverse=True):
            relative = path.relative_to(target).as_posix()
            if path.is_file() and relative not in files:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def copy_notebooks() -> list[str]:
    """docs/notebooks/ := the course's notebooks (as committed); their docnames in course order."""
    notebooks = course_notebooks()
    _sync_tree(DOCS / NOTEBOOKS, {path.relative_to("notebooks").as_posix(): (REPO / path).read_bytes()
                                  for path in notebooks})
    return [path.with_suffix("").as_posix() for path in notebooks]


def colab_setup_cell(notebook: dict):
    """The Colab set-up cell: the first code cell that mentions google.colab (None if there is none)."""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code" and "google.colab" in "".join(cell["source"]):
            return cell
    return None


def for_the_site(text: str) -> str:
    """A notebook's JSON as the site shows it: the Colab set-up cell removed (tag ``remove-cell``),
    the Colab badge's image served from the site, and the scale note after the title cell."""
    notebook = json.loads(text)
    setup = colab_setup_cell(notebook)
    if setup is not None:
        tags = setup.setdefault("metadata", {}).setdefault("tags", [])
        if "remove-cell" not in tags:
            tags.append("remove-cell")
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            source = "".join(cell["source"]).replace(
                "https://colab.research.google.com/assets/colab-badge.svg", "/_static/colab-badge.svg")
            cell["source"] = source
    scale = notebook.get("metadata", {}).get("cnncourse", {}).get("scale", DEFAULT_SCALE)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r} in a notebook's metadata; known: {sorted(SCALES)}")
    note = {"cell_type": "markdown", "id": "site-stored-outputs-scale", "metadata": {},
            "source": f":::{{admonition}} Stored outputs: {scale} scale\n:class: note stored-outputs-scale\n"
                      f"{SCALES[scale]}\n:::\n"}
    first_markdown = next((i for i, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "markdown"), -1)
    notebook["cells"].insert(first_markdown + 1, note)
    return json.dumps(notebook)


# ========================================================================== README and TEACHERS.md
INCLUDE = re.compile(r"```\{include\}\s+\.\./README\.md\n((?::[\w-]+:.*\n)*)")
OPTION = re.compile(r":([\w-]+):\s*(.*)")


def _unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def promoted_readme(text: str) -> str:
    """README with its ### headings made ## (and #### ###): each README section is a page whose
    title is the section's ## heading, so its subsections are the page's ## sections."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{3,6} ", line):
            line = line[1:]
        lines.append(line)
    return "\n".join(lines)


def readme_anchors() -> dict:
    """Each README heading's anchor -> the site page that shows it (``page.md`` or ``page.md#anchor``),
    found from the README includes of docs/*.md (their start-after/end-before)."""
    from myst_parser.mdit_to_docutils.base import default_slugify

    readme = promoted_readme((REPO / "README.md").read_text())
    anchors = {}
    for page in sorted(DOCS.glob("*.md")):
        for match in INCLUDE.finditer(page.read_text()):
            options = {m.group(1): _unquote(m.group(2)) for m in map(OPTION.match, match.group(1).splitlines())}
            start = readme.find(options["start-after"]) if "start-after" in options else 0
            end = readme.find(options["end-before"]) if "end-before" in options else len(readme)
            if "start-after" in options:
                title = options["start-after"].lstrip("#").strip()
                anchors[default_slugify(title)] = f"/{page.name}"
            for level, heading in re.findall(r"^(#{1,6}) (.+)$", readme[max(start, 0):end], re.M):
                slug = default_slugify(heading)  # README's title (#) is the page's title
                anchors.setdefault(slug, f"/{page.name}" if level == "#" else f"/{page.name}#{slug}")
    return anchors


LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def site_link(target: str, anchors: dict) -> str:
    """A link of README or TEACHERS.md (relative to the repository root) as the site needs it."""
    if re.match(r"[a-z]+:", target):
        return target
    path, _, anchor = target.partition("#")
    if path in ("", "README.md"):
        return anchors.get(anchor, f"/index.md#{anchor}" if anchor else "/index.md")
    if path == "TEACHERS.md":
        return "/teachers-guide.md" + (f"#{anchor}" if anchor else "")
    if re.fullmatch(r"notebooks/(labs/)?[0-9][0-9]_[\w-]+\.ipynb", path) and (REPO / path).is_file():
        return "/" + target
    return f"{REPOSITORY_URL}/blob/{BRANCH}/{target}"  # any other file of the repository


def include_read(app, relative_path, parent_docname, content) -> None:
    """README.md and TEACHERS.md as the site includes them (see the module's docstring)."""
    path = (Path(app.srcdir) / relative_path).resolve()
    if path not in (REPO / "README.md", REPO / "TEACHERS.md"):
        return
    text = content[0]
    if path.name == "README.md":
        text = promoted_readme(text)
    anchors = app.cnncourse_readme_anchors
    content[0] = LINK.sub(lambda m: m.group(1) + site_link(m.group(2), anchors) + m.group(3), text)


# ===================================================================================== API pages
def copyable_files() -> list[str]:
    """The files README's "Copy a single file" list names (tests/test_copy.py tests exactly those)."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- copyable:start -->(.*?)<!-- copyable:end -->", text, re.S)
    if not block:
        raise RuntimeError("README lacks its <!-- copyable:start --> ... <!-- copyable:end --> list")
    return re.findall(r"`(cnncourse/[\w/]+\.py)`", block.group(1))


def api_modules() -> list[str]:
    """The package's modules, found on disk: every module but ``__main__`` and the exercises' checks
    (``cnncourse.exercises.nbNN``, which the notebooks show)."""
    names = []
    for path in sorted((REPO / "cnncourse").rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__main__" or (parts[-2:-1] == ["exercises"] and re.fullmatch(r"nb\d\d", parts[-1])):
            continue
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return sorted(names, key=lambda name: (name.split(".")[:-1], name))


def write_api_pages() -> list[str]:
    """docs/api/: an index of the modules and one page per module (autodoc)."""
    copyable = copyable_files()
    modules = api_modules()
    pages = {}
    rows = []
    for module in modules:
        file = module.replace(".", "/") + ("/__init__.py" if (REPO / module.replace(".", "/")).is_dir() else ".py")
        alone = file in copyable
        mark = "copy alone" if alone else ""
        rows.append(f"| [`{module}`]({module}.md) | `{file}` | {mark} |")
        note = ""
        if alone:
            note = ("\n:::{admonition} Copy this file alone\n:class: tip copy-alone\n"
                    f"`{file}` works when copied alone into a project of your own (torch, numpy and tqdm "
                    "only, nothing of `cnncourse`): see [Copy a single file](/command-line.md#copy-a-single-file). "
                    "`tests/test_copy.py` copies it into an empty folder and calls it.\n:::\n")
        folder = REPO / module.replace(".", "/")
        # a package re-exports builders named like its modules (cnncourse.models.lenet): those are
        # described on the module's page, so that no name is described twice
        shadowed = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__") if folder.is_dir() else []
        exclude = f"   :exclude-members: {', '.join(shadowed)}\n" if shadowed else ""
        pages[f"{module}.md"] = (f"# {module}\n{note}\n"
                                 f"```{{eval-rst}}\n.. automodule:: {module}\n{exclude}```\n")
    pages["index.md"] = (
        "# API reference\n\n"
        "Generated from the docstrings of the `cnncourse` package. Modules marked **copy alone** work when "
        "copied alone into a project of your own, as README's "
        "[Copy a single file](/command-line.md#copy-a-single-file) says and `tests/test_copy.py` checks. "
        "The exercises' checks (`cnncourse.exercises.nbNN`) are left out: the notebooks show them.\n\n"
        "| module | file | |\n|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "```{toctree}\n:hidden:\n\n" + "\n".join(modules) + "\n```\n")
    _sync_tree(DOCS / API, {name: text.encode() for name, text in pages.items()})
    return [f"{API}/{module}" for module in modules]


# ======================================================================================= the hooks
LESSONS_AND_LABS = "{lessons-and-labs}"


def prepare(app, config) -> None:
    """Before Sphinx reads anything: the notebooks' copies and the API pages, fresh."""
    app.cnncourse_notebooks = copy_notebooks()
    write_api_pages()


def builder_inited(app) -> None:
    app.cnncourse_readme_anchors = readme_anchors()


def source_read(app, docname, source) -> None:
    if docname.startswith(f"{NOTEBOOKS}/"):
        source[0] = for_the_site(source[0])
    elif docname == "index":  # the navigation's lessons and labs, in course order
        source[0] = source[0].replace(LESSONS_AND_LABS, "\n".join(app.cnncourse_notebooks))


def copy_mathjax(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / "mathjax"
        if not (target / "tex-chtml.js").is_file():
            shutil.copytree(_mathjax_dir(), target, dirs_exist_ok=True)


def setup(app):
    _mathjax_dir()  # fail at once, with the fix, where MathJax is missing
    app.connect("config-inited", prepare)
    app.connect("builder-inited", builder_inited)
    app.connect("source-read", source_read)
    app.connect("include-read", include_read)
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
