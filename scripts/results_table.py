"""Regenerate README's results table and goal checks from results/*/metrics.json (``--check`` only compares)."""
from __future__ import annotations

import sys
from pathlib import Path

from cnncourse.reference import goals, table

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def render(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    results = README.parent / "results"
    return f"{head}{START}\n{table(results)}\n\nThe goals and the articles' figures, checked against the same files:\n\n{goals(results)}\n{END}{tail}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    current = README.read_text()
    updated = render(current)
    if "--check" in argv:
        if updated != current:
            print("README's results table is out of date: run python scripts/results_table.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(updated)
    print(updated.split(START, 1)[1].split(END, 1)[0].strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
