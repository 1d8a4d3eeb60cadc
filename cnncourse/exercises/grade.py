"""Grade a learner's notebook: run it top to bottom in quick mode and read what every check cell showed.

    python -m cnncourse.exercises.grade path/to/learner.ipynb [more.ipynb ...] [--timeout 600]

prints, per notebook, one row per exercise (number, passed or failed, title, and the check's message
when it failed) and a total; the exit status is 0 whatever the answers. In Python, ``grade(path)``
returns the rows as ``(exercise id, title, passed, message)``. The notebook runs in a fresh ``python3``
kernel with ``CNNCOURSE_QUICK=1``; its stored outputs are ignored, and a cell that raises does not stop
the run. Needs nbclient (it comes with ``pip install -e ".[dev]"``). The learner's code runs on your
machine: grade only notebooks you would run yourself. ``--list`` prints README's list of exercises.
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from cnncourse.exercises import all_exercises

__all__ = ["grade", "exercise_list", "main"]

CHECK_CALL = re.compile(r"\b(nb\d\d)\.(check_\w+)\s*\(")
Row = Tuple[str, str, bool, str]


def _index() -> Dict[Tuple[str, str], Tuple[str, str]]:
    """(module, check function name) -> (exercise id "N.k", title), from the package's EXERCISES."""
    return {(module, exercise.check.__name__): (f"{int(module[2:])}.{k}", exercise.title)
            for module, exercises in all_exercises().items() for k, exercise in enumerate(exercises, 1)}


def _shown(cell, calls: int, stopped: str) -> List[Tuple[bool, str]]:
    """What a check cell showed, one (passed, message) per check call in it."""
    results: List[Tuple[bool, str]] = []
    error: Optional[str] = None
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            value = (output.get("evalue") or "").strip().splitlines()
            error = f"the check cell raised {output.get('ename')}" + (f": {value[0]}" if value else "")
        text = output.get("data", {}).get("text/plain", "") if output.get("output_type") in (
            "execute_result", "display_data") else ""
        text = "".join(text).strip()
        if text[:1] in ("✓", "✗"):
            results.append((text.startswith("✓"), text))
    if cell.get("execution_count") is None and not results:
        error = stopped or "the check cell did not run"
    missing = error or "the check cell showed no result: make the check call the cell's last line"
    return (results + [(False, missing)] * calls)[:calls]


def grade(notebook_path, timeout: int = 600) -> List[Row]:
    """Run the notebook (``timeout`` seconds per cell, then the cell is interrupted) and grade it:
    one row per exercise of every notebook module it checks, in exercise order."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(notebook_path)
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:            # stored outputs are the learner's, not this run's
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    env = {**os.environ, "CNNCOURSE_QUICK": "1", "TQDM_DISABLE": "1"}
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=True,
                            interrupt_on_timeout=True, resources={"metadata": {"path": str(path.parent)}})
    stopped = ""
    try:
        client.execute(env=env)
    except Exception as error:             # a dead kernel: the cells after it did not run
        stopped = f"not run: the notebook stopped before this cell ({type(error).__name__})"
    index, found = _index(), {}
    named = re.match(r"(\d\d)_", path.name)
    modules = {f"nb{named.group(1)}"} if named else set()
    for cell in notebook.cells:
        calls = CHECK_CALL.findall(cell.source) if cell.cell_type == "code" else []
        for (module, check), shown in zip(calls, _shown(cell, len(calls), stopped)):
            if (module, check) in index:
                modules.add(module)
                found[(module, check)] = shown
    return [(number, title, *found.get(key, (False, "no check cell for this exercise in the notebook")))
            for key, (number, title) in index.items() if key[0] in modules]


def exercise_list() -> str:
    """The list of exercises in README's "For teachers" section, one line per notebook."""
    lines = []
    for module, exercises in all_exercises().items():
        n = int(module[2:])
        titles = "; ".join(f"{n}.{k} {exercise.title}" for k, exercise in enumerate(exercises, 1))
        lines.append(f"- **Notebook {n}** (solutions: `solutions/{module}.py`): {titles}.")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnncourse.exercises.grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="learners' notebooks (.ipynb)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    parser.add_argument("--list", action="store_true", help="print the exercises of every notebook and stop")
    args = parser.parse_args(argv)
    if args.list or not args.notebooks:
        print(exercise_list())
        return 0
    passed = total = 0
    for path in args.notebooks:
        rows = grade(path, timeout=args.timeout)
        print(f"\n{path}")
        for number, title, ok, message in rows:
            print(f"  {number:<5} {'passed' if ok else 'FAILED':<7} {title}" + ("" if ok else f"\n{'':16}{message}"))
        done = sum(ok for _, _, ok, _ in rows)
        print(f"  {done} of {len(rows)} passed")
        passed, total = passed + done, total + len(rows)
    print(f"\nTotal: {passed} of {total} exercises passed in {len(args.notebooks)} notebook(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
