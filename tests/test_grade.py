"""The grader on small notebooks run in a real python3 kernel: the grade comes from a fresh copy of the
checks, not from what the notebook showed; a notebook that cannot be read is named and the others are
graded; an answer that never ends fails on the check's time limit. And that limit itself, in check.py."""
from __future__ import annotations

import re
import signal
import time

import pytest

from cnncourse.exercises import nb01
from cnncourse.exercises import grade as grading
from cnncourse.exercises.check import TIME_LIMIT_VARIABLE

WRONG = '''\
def conv_params(in_channels, out_channels, kernel, bias=True):
    return 0


def stack_output_size(n, layers):
    return n
'''
RIGHT = '''\
def conv_params(in_channels, out_channels, kernel, bias=True):
    return out_channels * (in_channels * kernel * kernel + int(bias))
'''
LOOPS = '''\
def conv_params(in_channels, out_channels, kernel, bias=True):
    while True:
        pass
'''


def _notebook(path, *sources):
    """A notebook of code cells, as a learner would hand it in."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def _defined(source: str, name: str):
    namespace: dict = {}
    exec(source, namespace)
    return namespace[name]


def test_a_notebook_that_replaces_the_checks_gains_nothing(tmp_path):
    forge = '''\
from cnncourse.exercises import Result, check, nb01
nb01.check_conv_params = lambda answer=None: Result(True, "✓ passed (5 cases)")   # the check replaced
check._run = lambda name, body, answer: Result(True, "✓ passed (8 cases)")        # every check replaced


class Shown:                                                                       # a result made up
    def __repr__(self):
        return "✓ passed (6 cases)"


nb01.check_conv2d_strided = lambda answer=None: Shown()
'''
    path = _notebook(tmp_path / "forged.ipynb", forge, WRONG, "nb01.check_conv_params(conv_params)",
                     "nb01.check_stack_output_size(stack_output_size)", "nb01.check_conv2d_strided(None)")

    rows = {row[0]: row[2:] for row in grading.grade(path, timeout=120)}

    assert rows["1.1"] == (False, nb01.check_conv_params(_defined(WRONG, "conv_params")).message)
    assert rows["1.2"] == (False, nb01.check_stack_output_size(_defined(WRONG, "stack_output_size")).message)
    assert rows["1.3"] == (False, nb01.check_conv2d_strided(None).message)
    assert all(rows[number][1].startswith("✗ ") for number in ("1.1", "1.2", "1.3"))


def test_a_notebook_that_cannot_be_read_is_named_and_the_others_graded(tmp_path, capsys):
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    missing = tmp_path / "missing.ipynb"
    good = _notebook(tmp_path / "good.ipynb", "from cnncourse.exercises import nb01", RIGHT,
                     "nb01.check_conv_params(conv_params)")

    assert grading.main([str(broken), str(good), str(missing), "--timeout", "120"]) == 1

    out = capsys.readouterr().out
    assert f"{broken}\n  could not be read: NotJSONError: " in out
    assert f"{missing}\n  could not be read: FileNotFoundError: " in out
    assert re.search(rf"{re.escape(str(good))}\n  1\.1 +passed +Parameters of a convolution layer\n", out)
    assert "Total: 1 of 5 exercises passed in 1 notebook(s); 2 could not be read" in out
    with pytest.raises(grading.Unreadable, match="could not be read: NotJSONError"):
        grading.grade(broken)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no SIGALRM here: no time limit applies")
def test_an_answer_that_never_ends_fails_on_the_time_limit(tmp_path):
    path = _notebook(tmp_path / "loops.ipynb", "from cnncourse.exercises import nb01", LOOPS,
                     "nb01.check_conv_params(conv_params)")

    start = time.monotonic()
    rows = {row[0]: row[2:] for row in grading.grade(path, timeout=120, check_timeout=2)}

    assert time.monotonic() - start < 60   # the learner's check and the grader's, 2 s each, and a kernel's start
    assert rows["1.1"] == (False, "✗ the check took longer than 2 s: it was stopped in conv_params(3, 6, 5, "
                                  "bias=True). Hint: look for a loop in `conv_params` that never ends, and call it "
                                  "yourself on that case")
    assert grading.grade.__defaults__[-1] == grading.CHECK_TIMEOUT == 10


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no SIGALRM here: no time limit applies")
def test_a_check_stops_an_answer_at_its_time_limit_and_gives_the_alarm_back(monkeypatch):
    def swallows(*args, **kwargs):   # `except Exception` does not catch the time limit
        while True:
            try:
                while True:
                    pass
            except Exception:
                pass

    handler = signal.getsignal(signal.SIGALRM)
    monkeypatch.setenv(TIME_LIMIT_VARIABLE, "0.3")
    start = time.monotonic()
    result = nb01.check_conv_params(swallows)
    assert time.monotonic() - start < 5
    assert not result and result.message.startswith("✗ the check took longer than 0.3 s: it was stopped in ")
    assert signal.getsignal(signal.SIGALRM) is handler and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert nb01.check_conv_params(_defined(RIGHT, "conv_params")).passed   # a quick answer is unaffected
    for unset in ("0", "not a number", "nan"):
        monkeypatch.setenv(TIME_LIMIT_VARIABLE, unset)
        assert nb01.check_conv_params(_defined(RIGHT, "conv_params")).passed
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
