"""Build the course notebooks from their percent-format sources and run them to save outputs.

Each ``notebooks/src/NN_name.py`` holds cells separated by ``# %%`` (code) and
``# %% [markdown]`` (markdown, every line starting with ``# ``). This script writes
``notebooks/NN_name.ipynb`` and, with ``--execute`` (the default), runs it top to
bottom in quick mode so the committed notebook carries the outputs nbval compares.

    python scripts/build_notebooks.py            # all notebooks
    python scripts/build_notebooks.py 02 05      # the ones whose names start so
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "notebooks" / "src"
PLACEHOLDER = "{{REPOSITORY}}"  # in the sources: Colab badges and setup cells


def repository() -> str:
    """``owner/name`` of the repository, from ``[project.urls] Repository`` in pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'^Repository\s*=\s*"https://github\.com/([^/"]+/[^/"]+?)/?"', text, re.M)
    if not match:
        raise SystemExit("pyproject.toml needs [project.urls] Repository = \"https://github.com/OWNER/NAME\"")
    return match.group(1)
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def parse_cells(text: str) -> list:
    """Split percent-format text into nbformat cells."""
    cells, kind, lines = [], None, []

    def flush() -> None:
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif body:
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build(source: Path, execute: bool, timeout: int) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = parse_cells(source.read_text().replace(PLACEHOLDER, repository()))
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    notebook.metadata["language_info"] = {"name": "python"}
    target = REPO / "notebooks" / f"{source.stem}.ipynb"
    if execute:
        os.environ["CNNCOURSE_QUICK"] = "1"
        os.environ["TQDM_DISABLE"] = "1"
        start = time.perf_counter()
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(target.parent)}}).execute()
        print(f"{target.name}: executed in {time.perf_counter() - start:.1f} s")
    for cell in notebook.cells:  # keep diffs small: no execution timestamps
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(notebook, target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="build only notebooks whose file names start with these")
    parser.add_argument("--no-execute", action="store_true", help="write the notebooks without running them")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    sources = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if args.prefixes:
        sources = [s for s in sources if any(s.name.startswith(p) for p in args.prefixes)]
    if not sources:
        print("no notebook sources matched", file=sys.stderr)
        return 1
    for source in sources:
        build(source, execute=not args.no_execute, timeout=args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
