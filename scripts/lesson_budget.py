"""How long a lesson takes in class, by issue 24's formula, measured from the stored notebooks.

    minutes = markdown words / 150 + code lines / 10 + minutes of the lesson's live runs
              + 8 per checked exercise

(the open experiment at a lesson's end is homework and not counted). Labs (notebooks/labs/) are listed
under their lesson with their size; they are reading for after class and have no budget. A lesson's budget: at most 60
cells, 2,500 words of markdown and 90 minutes. The live runs' minutes come from
``results/laptop-scale.json`` when a timing script has recorded them; until then they count as 0 and
the table says so.

    python scripts/lesson_budget.py           # print the table
    python scripts/lesson_budget.py --readme  # write it into README's "For teachers" section
    python scripts/lesson_budget.py --check   # exit 1 if README's table is out of date
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
START, END = "<!-- lessons:start -->", "<!-- lessons:end -->"
LIMITS = {"cells": 60, "words": 2500, "minutes": 90}
WORD = re.compile(r"[A-Za-z0-9][\w'’.,-]*")


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _prose(text: str) -> str:
    """Markdown as read: without code blocks' fences, link targets, images and HTML comments."""
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text)                # images and badges
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)              # links: their words only
    return text


def measure(path: Path, live_minutes: Optional[float] = None) -> Dict[str, object]:
    """Cells, markdown words, code lines, checked exercises and the estimated minutes of a notebook."""
    cells = json.loads(path.read_text())["cells"]
    markdown = [_source(c) for c in cells if c["cell_type"] == "markdown"]
    code = [_source(c) for c in cells if c["cell_type"] == "code"]
    words = sum(len(WORD.findall(_prose(text))) for text in markdown)
    lines = sum(1 for text in code for line in text.splitlines()
                if line.strip() and not line.strip().startswith("#") and "google.colab" not in line)
    exercises = sum(1 for text in markdown if re.match(r"#+ Exercise \d+\.\d+", text.strip()))
    minutes = words / 150 + lines / 10 + (live_minutes or 0.0) + 8 * exercises
    return {"notebook": path.name, "cells": len(cells), "words": words, "code_lines": lines,
            "exercises": exercises, "live_minutes": live_minutes, "minutes": minutes}


def lessons() -> List[Path]:
    return sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def labs(lesson: Path) -> List[Path]:
    """The labs beside a lesson: notebooks/labs/NN_*.ipynb with the lesson's number."""
    return sorted((REPO / "notebooks" / "labs").glob(f"{lesson.name[:2]}_*.ipynb"))


def live_minutes() -> Dict[str, float]:
    record = REPO / "results" / "laptop-scale.json"
    if not record.is_file():
        return {}
    return {name: float(entry["minutes"]) for name, entry in json.loads(record.read_text()).items()}


def table() -> str:
    runs = live_minutes()
    rows = ["| lesson | cells | markdown words | code lines | checked exercises | live runs | minutes in class "
            "(estimated) | within the budget |", "|---|---|---|---|---|---|---|---|"]
    for path in lessons():
        m = measure(path, runs.get(path.stem))
        within = all(m[key] <= limit for key, limit in LIMITS.items())
        live = "not timed yet (0 counted)" if m["live_minutes"] is None else f"{m['live_minutes']:.1f} min (laptop scale)"
        rows.append(f"| [{path.stem[:2]}](notebooks/{path.name}) | {m['cells']} | {m['words']:,} | {m['code_lines']:,} "
                    f"| {m['exercises']} | {live} | {m['minutes']:.0f} | {'yes' if within else 'no'} |")
        for lab in labs(path):
            m = measure(lab)
            rows.append(f"| [{path.stem[:2]} lab](notebooks/labs/{lab.name}) | {m['cells']} | {m['words']:,} "
                        f"| {m['code_lines']:,} | {m['exercises']} | reads recorded runs | (reading) | lab: no budget |")
    return "\n".join(rows)


def render(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if README's table is out of date")
    args = parser.parse_args(argv)
    if args.check:
        current = README.read_text()
        if render(current) != current:
            print("README's lesson table is out of date: run python scripts/lesson_budget.py --readme", file=sys.stderr)
            return 1
        return 0
    if args.readme:
        README.write_text(render(README.read_text()))
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
