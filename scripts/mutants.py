"""Hand-made mutants: realistic one-line bugs, each applied alone in a scratch copy of the repository,
with the tests that must catch it (issue 28).

    python scripts/mutants.py                 # every mutant: CAUGHT or MISSED, and a total
    python scripts/mutants.py NAME [NAME...]  # only these
    python scripts/mutants.py --list

The mutants live in tests/mutants/mutants.json: for each, the file, the exact text it replaces (it
must occur exactly once; tests/test_mutants.py checks that every mutant still applies), the bug put in
its place, and the tests to run. A mutant is CAUGHT when those tests fail with it applied. Why not
mutmut: it makes thousands of random mutants and runs the whole suite for each (hours here); these are
the bugs that matter, found by hand or by a careless-user session, each tied to the test that holds it,
and a short script needs no dependency. The script takes a few minutes and is not run in CI; its last
result goes into the closing note of the change that touched it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "tests" / "mutants" / "mutants.json"
COPIED = ("cnncourse", "tests", "scripts", "results", "conftest.py", "pyproject.toml", "README.md", "notebooks",
          "sources", "jupytext.toml", "constraints.txt", "environment.yml")


def load(path: Path = MUTANTS) -> list:
    return json.loads(path.read_text())["mutants"]


def applies(mutant: dict, root: Path = ROOT) -> bool:
    return (root / mutant["file"]).read_text().count(mutant["original"]) == 1


def _pytest(tests, scratch: Path, timeout=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:nbval", "-o", "addopts=",
                           "-p", "no:cacheprovider", *tests], cwd=scratch, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(scratch), PYTHONDONTWRITEBYTECODE="1"), timeout=timeout)


def run(mutant: dict, scratch: Path) -> bool:
    """True when the mutant's tests fail with it applied (caught)."""
    target = scratch / mutant["file"]
    pristine = target.read_text()
    target.write_text(pristine.replace(mutant["original"], mutant["mutant"], 1))
    try:
        return _pytest(mutant["tests"], scratch, timeout=300).returncode != 0
    except subprocess.TimeoutExpired:  # a test that hangs with the bug in place has caught it too
        return True
    finally:
        target.write_text(pristine)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    mutants = [m for m in load() if not args.names or m["name"] in args.names]
    if args.list:
        for m in mutants:
            print(f"{m['name']:<40} {m['file']}: {m['bug']}")
        return 0
    missed = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        scratch = Path(tmp)
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, scratch / name, ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.png"))
            elif source.exists():
                shutil.copy2(source, scratch / name)
        baseline = _pytest(sorted({t for m in mutants for t in m["tests"]}), scratch)
        if baseline.returncode != 0:  # a mutant counts as caught only if its tests pass without it
            print("the mutants' tests fail on the unmutated copy:\n" + baseline.stdout[-3000:])
            return 2
        print("the mutants' tests pass on the unmutated copy", flush=True)
        for mutant in mutants:
            if not applies(mutant, scratch):
                print(f"STALE   {mutant['name']}: its original text is not in {mutant['file']} exactly once")
                missed.append(mutant["name"])
                continue
            caught = run(mutant, scratch)
            print(f"{'CAUGHT' if caught else 'MISSED'}  {mutant['name']}: {mutant['bug']}", flush=True)
            if not caught:
                missed.append(mutant["name"])
    print(f"{len(mutants) - len(missed)} of {len(mutants)} mutants caught" + (f"; missed: {', '.join(missed)}"
                                                                           if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
