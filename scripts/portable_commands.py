"""Rewrite the ``command`` of every recorded run so that it re-runs on another machine (issue 26).

A recorded command names the experiment, not the machine: no ``--threads``, ``--workers`` or
``--data-root``, and an image folder by its path inside the data folder (``--data cifar10-jpeg``,
which ``cnncourse train`` resolves against the data folder). The records of earlier runs wrote
their machine's absolute paths; this rewrites their ``command`` (in metrics.json and run.json) and
their ``data`` label the same way. What the run was typed with (``argv``) and its ``settings`` are
kept as they were. An absolute ``--data`` path becomes its path relative to the run's
``--data-root`` when it lies inside it, else its last part: every recorded run read its image
folders from the top of its data folder (results/run_all.sh's layout, ``DATA/cifar10-jpeg``).

    python scripts/portable_commands.py            # rewrite results/ in place
    python scripts/portable_commands.py --check    # exit 1, listing them, if any command is not portable
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path, PurePosixPath
from typing import Iterator, List, Optional, Tuple

RESULTS = Path(__file__).resolve().parents[1] / "results"
MACHINE_OPTIONS = ("--threads", "--workers", "--data-root")


def portable_path(path: str, data_root: Optional[str]) -> str:
    """An absolute data path as the name a record should give it (see the module's docstring)."""
    if not PurePosixPath(path).is_absolute() and not path.startswith("~"):
        return path
    if data_root:
        try:
            return PurePosixPath(path).relative_to(PurePosixPath(data_root)).as_posix()
        except ValueError:
            pass
    return PurePosixPath(path).name


def portable_command(command: str) -> str:
    """``command`` without machine options, its ``--data`` named portably."""
    words = shlex.split(command)
    data_root = next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "--data-root"), None)
    kept: List[str] = []
    skip = False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word in MACHINE_OPTIONS:
            skip = True
            continue
        if i > 0 and words[i - 1] == "--data":
            word = portable_path(word, data_root)
        kept.append(word)
    return " ".join(shlex.quote(w) for w in kept)


def machine_paths(command: str) -> List[str]:
    """The words of ``command`` that name this machine: absolute paths (bar the --out folder's own
    relative form), home folders, and machine options."""
    words = shlex.split(command)
    return [w for w in words if w.startswith(("/", "~")) or w in MACHINE_OPTIONS or (len(w) > 2 and w[1:3] == ":\\")]


def records(results: Path = RESULTS) -> Iterator[Tuple[Path, dict]]:
    for path in sorted(results.rglob("*.json")):
        if path.name in ("metrics.json", "run.json"):
            yield path, json.loads(path.read_text())


def _commands(record: dict) -> Iterator[Tuple[dict, str]]:
    for holder in (record, record.get("provenance") or {}):
        if isinstance(holder, dict) and isinstance(holder.get("command"), str):
            yield holder, "command"


def rewrite(results: Path = RESULTS) -> List[Path]:
    """Rewrite every record under ``results`` in place; the files that changed."""
    changed = []
    for path, record in records(results):
        before = json.dumps(record, sort_keys=True)
        data_root = None
        for holder, key in _commands(record):
            words = shlex.split(holder[key])
            data_root = data_root or next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "--data-root"),
                                          None)
            holder[key] = portable_command(holder[key])
        if isinstance(record.get("data"), str):
            record["data"] = portable_path(record["data"], data_root)
        if json.dumps(record, sort_keys=True) != before:
            ending = "\n" if path.read_text().endswith("\n") else ""
            path.write_text(json.dumps(record, indent=2) + ending)
            changed.append(path)
    return changed


def not_portable(results: Path = RESULTS) -> List[str]:
    return [f"{path}: {holder[key]}" for path, record in records(results) for holder, key in _commands(record)
            if machine_paths(holder[key])]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only list the commands that are not portable")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.check:
        bad = not_portable(args.results)
        print("\n".join(bad) or "every recorded command is portable")
        return 1 if bad else 0
    changed = rewrite(args.results)
    print(f"rewrote {len(changed)} record(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
