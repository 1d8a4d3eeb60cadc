"""Checked exercises for the notebooks: ``nb01`` ... ``nb09``, one module each.

In a notebook, the learner fills in a stub and runs its check cell::

    from cnncourse.exercises import nb02
    nb02.check_batchnorm_forward(batchnorm_forward)

which shows "✓ passed (N cases)" or the failing case with a hint. Every module lists its exercises
in ``EXERCISES`` (name, title, notebook section, check, stub source); the reference solutions are
kept apart, in the repository's ``solutions/`` folder.
"""
from __future__ import annotations

import importlib
from typing import Dict, List

from cnncourse.exercises.check import Exercise, Result

NOTEBOOKS = ("nb01", "nb02", "nb03", "nb04", "nb05", "nb06", "nb07", "nb08", "nb09")

__all__ = ["NOTEBOOKS", "Exercise", "Result", "all_exercises"]


def all_exercises() -> Dict[str, List[Exercise]]:
    """Every notebook's exercises, in notebook order: ``{"nb01": [...], ...}``."""
    return {name: importlib.import_module(f"cnncourse.exercises.{name}").EXERCISES for name in NOTEBOOKS}
