"""Grade a learner's notebook: run it top to bottom in quick mode, then check every answer again with
a fresh copy of the package's checks.

    python -m cnncourse.exercises.grade path/to/learner.ipynb [more.ipynb ...] [--timeout 600] [--check-timeout 10]

prints, per notebook, one row per exercise (number, passed or failed, title, and the check's message
when it failed) and a total. The exit status is 0 whatever the answers, and 1 when a notebook could
not be read (missing, not JSON, not a notebook): it gets the line "could not be read: <reason>" and the
others are graded all the same. In Python, ``grade(path)`` returns the rows as ``(exercise id, title,
passed, message)`` and raises :class:`Unreadable` for such a notebook.

The notebook runs in a fresh ``python3`` kernel with ``CNNCOURSE_QUICK=1``; a cell that raises does not
stop the run. Right after each cell that calls ``nbNN.check_xxx(answer)``, the grader evaluates that
call's argument in the kernel and hands it to ``check_xxx`` from a copy of ``check.py`` and ``nbNN.py``
loaded afresh from this package's files, and that check's result is the grade: the notebook's stored and
printed outputs count for nothing, and a notebook that replaces ``nbNN.check_xxx`` or
``cnncourse.exercises.check``, or prints "✓" itself, gains nothing. Grading runs the learner's code,
though, so code that edits files on disk (the package's own files, say) or tampers with the libraries
the checks use (torch, NumPy) can still cheat: grade only notebooks you would run yourself.

Each check (the learner's own and the grader's) may take ``--check-timeout`` seconds (default 10, 0 for
none), then fails with "✗ the check took longer than N s: ..."; the limit uses SIGALRM, so where the
platform has none (Windows) no limit applies and only ``--timeout`` (seconds per cell, after which the
cell is interrupted) stops an answer that never ends. Needs nbclient (it comes with
``pip install -e ".[dev]"``). ``--list`` prints README's list of exercises.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from cnncourse.exercises import all_exercises
from cnncourse.exercises.check import TIME_LIMIT_VARIABLE

__all__ = ["CHECK_TIMEOUT", "Unreadable", "grade", "exercise_list", "main"]

CHECK_CALL = re.compile(r"\b(nb\d\d)\.(check_\w+)\s*\(")
CHECK_TIMEOUT = 10.0
PACKAGE = Path(__file__).resolve().parent
Row = Tuple[str, str, bool, str]

# The cell the grader runs after a learner's check cell. It shows the fresh check's Result, or raises
# (the argument cannot be evaluated: a name the notebook never defined, say). The fresh copy of check.py
# stands in for cnncourse.exercises.check only while nbNN.py is loaded; neither stays in sys.modules.
RECHECK = '''\
def _cnncourse_grader_recheck(folder, module, check, arguments, limit):
    import importlib.util, os, sys
    answer = eval("(lambda answer=None: answer)(" + arguments + "\\n)", globals())

    def load(name, path):
        spec = importlib.util.spec_from_file_location(name, path)
        fresh = importlib.util.module_from_spec(spec)
        sys.modules[name] = fresh
        try:
            spec.loader.exec_module(fresh)
        finally:
            del sys.modules[name]
        return fresh

    learners = sys.modules.get("cnncourse.exercises.check")
    sys.modules["cnncourse.exercises.check"] = load("_cnncourse_grader_check", os.path.join(folder, "check.py"))
    try:
        exercises = load("_cnncourse_grader_" + module, os.path.join(folder, module + ".py"))
    finally:
        sys.modules["cnncourse.exercises.check"] = learners
    os.environ[{variable!r}] = repr(limit)
    return getattr(exercises, check)(answer)


try:
    _cnncourse_grader_result = _cnncourse_grader_recheck({folder!r}, {module!r}, {check!r}, {arguments!r}, {limit!r})
finally:
    del _cnncourse_grader_recheck
_cnncourse_grader_result
'''


class Unreadable(ValueError):
    """A notebook that could not be read: missing, not JSON, or not a notebook."""


def _index() -> Dict[Tuple[str, str], Tuple[str, str]]:
    """(module, check function name) -> (exercise id "N.k", title), from the package's EXERCISES."""
    return {(module, exercise.check.__name__): (f"{int(module[2:])}.{k}", exercise.title)
            for module, exercises in all_exercises().items() for k, exercise in enumerate(exercises, 1)}


def _arguments(source: str, start: int) -> Optional[str]:
    """The text between the parentheses of the call whose "(" ends at ``start``; None if it never closes."""
    for close in (m.start() for m in re.finditer(r"\)", source[start:])):
        text = source[start:start + close]
        try:
            ast.parse(f"f({text}\n)", mode="eval")
        except SyntaxError:
            continue
        return text
    return None


def _shown(cell, calls: int, stopped: str) -> List[Tuple[bool, str]]:
    """What a check cell showed, one (passed, message) per check call in it: the last ``calls`` results
    it displayed, or, if it raised, the error for every call."""
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
    if error:
        return [(False, error)] * calls
    missing = "the check cell showed no result: make the check call the cell's last line"
    return ([(False, missing)] * calls + results)[-calls:]


def grade(notebook_path, timeout: int = 600, check_timeout: float = CHECK_TIMEOUT) -> List[Row]:
    """Run the notebook (``timeout`` seconds per cell, then the cell is interrupted), check every answer
    again with fresh checks (``check_timeout`` seconds each, 0 for no limit) and grade it: one row per
    exercise of every notebook module it checks, in exercise order. Raises :class:`Unreadable`."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(notebook_path)
    try:
        notebook = nbformat.read(path, as_version=4)
        kinds = [(cell.cell_type, cell.source) for cell in notebook.cells]    # JSON, but is it a notebook?
    except Exception as error:             # missing, not JSON, not a notebook
        reason = (str(error).strip().splitlines() or [""])[0]
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        raise Unreadable(f"could not be read: {type(error).__name__}" + (f": {reason}" if reason else "")) from error
    index, cells, rechecks = _index(), [], {}
    limit = max(float(check_timeout), 0.0)
    for cell, (kind, _) in zip(notebook.cells, kinds):
        cells.append(cell)
        if kind != "code":
            continue
        cell.outputs, cell.execution_count = [], None    # stored outputs are the learner's, not this run's
        for call in CHECK_CALL.finditer(cell.source):   # the last call of a check decides
            key, arguments = call.groups(), _arguments(cell.source, call.end())
            if key not in index:
                continue
            if arguments is None:
                rechecks[key] = "the check call has no closing parenthesis"
                continue
            cells.append(nbformat.v4.new_code_cell(RECHECK.format(
                folder=str(PACKAGE), module=key[0], check=key[1], arguments=arguments, limit=limit,
                variable=TIME_LIMIT_VARIABLE)))
            rechecks[key] = cells[-1]
    notebook.cells = cells
    env = {**os.environ, "CNNCOURSE_QUICK": "1", "TQDM_DISABLE": "1", TIME_LIMIT_VARIABLE: repr(limit)}
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=True,
                            interrupt_on_timeout=True, resources={"metadata": {"path": str(path.parent)}})
    stopped = ""
    try:
        client.execute(env=env)
    except Exception as error:             # a dead kernel: the cells after it did not run
        stopped = f"not run: the notebook stopped before this cell ({type(error).__name__})"
    named = re.match(r"(\d\d)_", path.name)
    modules = {f"nb{named.group(1)}"} if named else set()
    modules.update(module for module, _ in rechecks)
    found = {key: (False, cell) if isinstance(cell, str) else _shown(cell, 1, stopped)[0]
             for key, cell in rechecks.items()}
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
    parser.add_argument("--check-timeout", type=float, metavar="SECONDS",
                        help=f"seconds allowed per check (default {CHECK_TIMEOUT:g}; 0: no limit)")
    parser.add_argument("--list", action="store_true", help="print the exercises of every notebook and stop")
    args = parser.parse_args(argv)
    if args.list or not args.notebooks:
        print(exercise_list())
        return 0
    limits = {} if args.check_timeout is None else {"check_timeout": args.check_timeout}
    passed = total = unread = 0
    for path in args.notebooks:
        try:
            rows = grade(path, timeout=args.timeout, **limits)
        except Unreadable as error:
            print(f"\n{path}\n  {error}")
            unread += 1
            continue
        print(f"\n{path}")
        for number, title, ok, message in rows:
            print(f"  {number:<5} {'passed' if ok else 'FAILED':<7} {title}" + ("" if ok else f"\n{'':16}{message}"))
        done = sum(ok for _, _, ok, _ in rows)
        print(f"  {done} of {len(rows)} passed")
        passed, total = passed + done, total + len(rows)
    print(f"\nTotal: {passed} of {total} exercises passed in {len(args.notebooks) - unread} notebook(s)"
          + (f"; {unread} could not be read" if unread else ""))
    return 1 if unread else 0


if __name__ == "__main__":
    raise SystemExit(main())
