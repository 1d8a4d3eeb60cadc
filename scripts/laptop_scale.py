"""Time lessons at the laptop scale and record it: results/laptop-scale.json.

Each lesson named is built as scripts/build_notebooks.py builds it, at the laptop scale (the full
MNIST, Fashion-MNIST and CIFAR-10 from CNNCOURSE_DATA), so its stored outputs become what a learner's
laptop shows; then its record is written: the minutes the whole notebook took to run (its live runs
and everything else), the CPU, and every strict target line it printed ("target reached ...: True").
scripts/lesson_budget.py counts those minutes as the lesson's live runs. Run it on a quiet machine:
anything else running makes the minutes meaningless.

    CNNCOURSE_DATA=/path/to/data python scripts/laptop_scale.py 01        # lesson 1
    CNNCOURSE_DATA=/path/to/data python scripts/laptop_scale.py           # every lesson
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_notebooks import REPO, SOURCES, build  # noqa: E402

RECORD = REPO / "results" / "laptop-scale.json"
TARGET_PREFIX = "target reached"


def target_lines(notebook: dict) -> list:
    """The strict lines a notebook printed: each starts with 'target reached' and ends True or False."""
    lines = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            text = "".join(output.get("text", ""))
            lines += [line for line in text.splitlines() if line.startswith(TARGET_PREFIX)]
    return lines


def record_lesson(source: Path, timeout: int) -> dict:
    # The lessons keep their checkpoints in notebooks/runs/ (what a learner's outputs name): one left by an
    # earlier run would resume that run and skip the training being timed, so there must be none.
    runs = REPO / "notebooks" / "runs"
    left = sorted(p.name for p in runs.glob("*.pt")) if runs.is_dir() else []
    if left:
        raise SystemExit(f"{runs} holds checkpoints ({', '.join(left)}): move them away first, or the lesson "
                         "would resume them instead of training")
    os.environ.pop("CNNCOURSE_RUNS", None)
    try:
        target = build(source, execute=True, timeout=timeout, scale="laptop")
    finally:  # the checkpoints of this timing run are not a learner's work: leave the folder as it was
        existed = runs.is_dir()
        for checkpoint in runs.glob("*.pt") if existed else []:
            checkpoint.unlink()
        if existed and not any(runs.iterdir()):
            runs.rmdir()
    notebook = json.loads(target.read_text())
    meta = notebook["metadata"]["cnncourse"]
    lines = target_lines(notebook)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {"minutes": round(meta["executed_seconds"] / 60, 2), "seconds": meta["executed_seconds"],
            "cpu": meta["cpu"], "logical_cpus": meta["logical_cpus"], "targets": lines,
            "all_targets_met": all(line.rstrip().endswith("True") for line in lines),  # none: no live run
            "date": datetime.date.today().isoformat(), "commit": commit or None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers (01 ... 09); default: all")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    sources = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if args.lessons:
        sources = [s for s in sources if s.name[:2] in args.lessons]
    if not sources:
        print("no lesson matched", file=sys.stderr)
        return 1
    record = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
    for source in sources:
        entry = record_lesson(source, args.timeout)
        record[source.stem] = entry
        RECORD.write_text(json.dumps(dict(sorted(record.items())), indent=2, ensure_ascii=False) + "\n")
        print(f"{source.stem}: {entry['minutes']:.1f} min at the laptop scale on {entry['cpu']}; "
              f"targets: {entry['targets'] or 'none printed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
