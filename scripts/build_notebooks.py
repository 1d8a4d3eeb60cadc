"""Build the course notebooks from their jupytext sources and run them to store their outputs.

``sources/NN_name.py`` (jupytext's percent format, paired with ``notebooks/NN_name.ipynb`` by
``jupytext.toml``; a lesson's lab ``sources/labs/NN_topic.py`` with ``notebooks/labs/NN_topic.ipynb``) is read with jupytext, run top to bottom with nbclient (at the sample scale, quick mode, unless --scale says otherwise), and
written as the notebook, so the committed notebook carries the outputs nbval compares. jupytext
does the pairing; this script adds what it cannot: quick mode while executing, and the repository
address of pyproject.toml written into each source's Colab badge and setup cell first.

    python scripts/build_notebooks.py            # all notebooks
    python scripts/build_notebooks.py 02 05      # the lessons and labs whose names start so
    python scripts/build_notebooks.py labs/02    # only lab 02
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import jupytext
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "sources"
BADGE = re.compile(r"colab\.research\.google\.com/github/([^/\s]+/[^/\s]+)/blob/")
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def repository() -> str:
    """``owner/name`` of the repository, from ``[project.urls] Repository`` in pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'^Repository\s*=\s*"https://github\.com/([^/"]+/[^/"]+?)/?"', text, re.M)
    if not match:
        raise SystemExit("pyproject.toml needs [project.urls] Repository = \"https://github.com/OWNER/NAME\"")
    return match.group(1)


def with_repository(text: str, slug: str) -> str:
    """``text`` with the address of its Colab badge (and every other use of it) replaced by ``slug``."""
    match = BADGE.search(text)
    if not match:
        raise SystemExit("a notebook source needs its Colab badge in the first cell")
    return text.replace(f"/{match.group(1)}/", f"/{slug}/").replace(f"/{match.group(1)}\"", f"/{slug}\"")


def all_sources() -> list:
    """The lessons' sources (sources/NN_*.py), then the labs' (sources/labs/NN_*.py)."""
    return sorted(SOURCES.glob("[0-9][0-9]_*.py")) + sorted(SOURCES.glob("labs/[0-9][0-9]_*.py"))


def notebook_for(source: Path) -> Path:
    """The notebook a source builds: the same path under notebooks/ instead of sources/."""
    return (REPO / "notebooks" / source.relative_to(SOURCES)).with_suffix(".ipynb")


def build(source: Path, execute: bool, timeout: int, scale: str = "sample") -> Path:
    text = source.read_text()
    updated = with_repository(text, repository())
    if updated != text:
        source.write_text(updated)
    notebook = jupytext.reads(updated, fmt="py:percent")
    notebook.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    target = notebook_for(source)
    if execute:
        os.environ["CNNCOURSE_QUICK"] = "1" if scale == "sample" else "0"
        os.environ["CNNCOURSE_SCALE"] = scale
        os.environ["TQDM_DISABLE"] = "1"
        start = time.perf_counter()
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(target.parent)}}).execute()
        seconds = time.perf_counter() - start
        # What the stored outputs were made with: the site and the timing record say it beside them.
        from cnncourse.cli import _cpu_name  # the name every run record and `cnncourse info` give
        notebook.metadata["cnncourse"] = {"scale": scale, "cpu": _cpu_name(), "logical_cpus": os.cpu_count(),
                                          "executed_seconds": round(seconds, 1)}
        print(f"{target.name}: executed at the {scale} scale in {seconds:.1f} s")
    for cell in notebook.cells:  # keep diffs small: no execution timestamps
        cell.get("metadata", {}).pop("execution", None)
    jupytext.write(notebook, target, fmt="ipynb")
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="build only notebooks whose file names start with these")
    parser.add_argument("--no-execute", action="store_true", help="write the notebooks without running them")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    parser.add_argument("--scale", choices=("sample", "laptop", "full"), default="sample",
                        help="the scale the stored outputs are made at (nbval re-runs them at 'sample'; "
                             "give --scale laptop for a lesson whose scale-dependent cells are tagged "
                             "nbval-ignore-output, with CNNCOURSE_DATA naming a folder that holds the data)")
    args = parser.parse_args(argv)
    sources = all_sources()
    if args.prefixes:
        sources = [s for s in sources if any(s.name.startswith(p) or str(s.relative_to(SOURCES)).startswith(p)
                                             for p in args.prefixes)]
    if not sources:
        print("no notebook sources matched", file=sys.stderr)
        return 1
    for source in sources:
        build(source, execute=not args.no_execute, timeout=args.timeout, scale=args.scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
