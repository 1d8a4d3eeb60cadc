"""The exercise checker: run hidden cases on a learner's answer and return a :class:`Result`.

The cases are hidden from the notebook (they live here) and compare the answer with an independent
computation: a torch function, the package's own module, a formula. A check never raises: a blank
stub, an exception in the learner's code, a wrong shape or a wrong value all become a failed Result
that names the failing case and gives a hint; a notebook cell shows it as "✓ passed (N cases)" or
"✗ <case>: got ..., expected .... Hint: ...". Messages hold no timings or addresses, so a stored
output is the same on every run; checks seed their own random numbers and give the learner's back.
Where the environment variable ``CNNCOURSE_CHECK_TIMEOUT`` holds a number of seconds (the grader sets it)
and the platform has SIGALRM, a check that runs longer fails with "✗ the check took longer than N s: ...";
unset, or without SIGALRM (Windows), or outside the main thread, no limit applies.

Why not otter-grader: its ``Notebook.check`` runs the public tests that Otter Assign ships with the
student's notebook (beside it or in its metadata) and leaves hidden tests to the autograder; we want
hidden cases with a hint at once, a Result a test can assert on, no assign step and no extra dependency.
"""
from __future__ import annotations

import html
import math
import os
import random
import re
import signal
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Exercise", "Forbidden", "Mismatch", "Result", "Tester", "checker", "fmt", "forbid", "transfer"]


@dataclass(frozen=True)
class Result:
    """The outcome of a check: ``passed``, the ``message`` a notebook cell shows, the cases run."""

    passed: bool
    message: str
    cases: int = 0

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    __str__ = __repr__

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else "#cf222e"
        return (f'<div style="border-left: 4px solid {colour}; padding: 2px 8px; white-space: pre-wrap; '
                f'font-family: monospace">{html.escape(self.message)}</div>')


@dataclass(frozen=True)
class Exercise:
    """One exercise: the learner defines ``name`` (from the ``stub`` source), ``check`` judges it.

    ``section`` is the title of the ``##`` heading of the notebook section the exercise belongs to.
    """

    name: str
    title: str
    section: str
    check: Callable[[Any], Result]
    stub: str

    def stub_answer(self) -> Any:
        """The blank stub as the learner first sees it: the object its source defines."""
        namespace: Dict[str, Any] = {}
        exec(compile(self.stub, f"<stub of {self.name}>", "exec"), namespace)
        return namespace[self.name]


class Mismatch(Exception):
    """A hidden case failed: what was wrong, and a hint naming the likely mistake."""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(problem)
        self.problem, self.hint = problem, hint


class Forbidden(Exception):
    """Raised by a library function that an exercise asks the learner to write without."""

    def __init__(self, name: str, hint: str) -> None:
        super().__init__(name)
        self.name, self.hint = name, hint


def _numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        return torch.stack([v.detach().cpu() for v in value]).numpy()
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def fmt(value: Any) -> str:
    """A short, deterministic description of a value for a message (never a memory address)."""
    value = _numpy(value)
    if value is None or isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, np.ndarray):
        if value.ndim == 0 and value.dtype.kind in "biuf":
            return fmt(value.item())
        if value.dtype.kind in "biuf" and value.size <= 12:
            return np.array2string(value, precision=4, separator=", ", suppress_small=True).replace("\n", "")
        return f"an array of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)) and len(value) <= 20 and all(
            v is None or isinstance(v, (str, bool, np.bool_)) or _is_number(v) for v in value):
        inner = ", ".join(fmt(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, type):
        return f"the class {value.__name__}"
    return f"a {type(value).__name__}"


def _diff(got: np.ndarray, expected: np.ndarray) -> str:
    if got.shape != expected.shape:
        return f"got shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if got.size <= 9:
        return f"got {fmt(got)}, expected {fmt(expected)}"
    gap = np.nan_to_num(np.abs(got - expected), nan=np.inf)
    where = np.unravel_index(int(np.argmax(gap)), got.shape)
    wrong = int(np.sum(~np.isclose(got, expected, rtol=1e-5, atol=1e-6)))
    return (f"got {float(got[where]):.6g} at {list(map(int, where))}, expected {float(expected[where]):.6g} "
            f"({wrong} of {got.size} values differ)")


def _same(got: Any, expected: Any) -> bool:
    got, expected = _numpy(got), _numpy(expected)
    if isinstance(got, np.ndarray) and got.shape == () and got.dtype.kind in "biuf":
        got = got.item()
    if isinstance(expected, (bool, np.bool_)):
        return isinstance(got, (bool, np.bool_)) and bool(got) == bool(expected)
    if _is_number(expected):
        return _is_number(got) and float(got) == float(expected)
    if isinstance(expected, (list, tuple)):
        return (isinstance(got, (list, tuple)) and len(got) == len(expected)
                and all(_same(g, e) for g, e in zip(got, expected)))
    return type(got) is type(expected) and got == expected


class Tester:
    """What a check body uses: ``case`` names the next hidden case, the rest compare and fail."""

    def __init__(self, name: str) -> None:
        self.name, self.cases, self.label = name, 0, name

    def case(self, label: str) -> None:
        self.cases += 1
        self.label = label

    def fail(self, problem: str, hint: str) -> None:
        raise Mismatch(problem, hint)

    def call(self, answer: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The learner's ``answer(*args, **kwargs)``; returning None is a failure."""
        out = answer(*args, **kwargs)
        if out is None:
            self.fail("returned None", f"finish `{self.name}` and `return` its result")
        return out

    def module(self, answer: Callable[..., Any], *args: Any) -> nn.Module:
        """An instance of the learner's module class."""
        if isinstance(answer, nn.Module):
            self.fail("got a module, not its class", f"pass the class itself, `{self.name}`, not `{self.name}(...)`")
        block = self.call(answer, *args)
        if not isinstance(block, nn.Module):
            self.fail(f"got {fmt(block)}, expected an nn.Module",
                      f"`{self.name}` must be a class that subclasses nn.Module (call super().__init__() first)")
        return block

    def array(self, value: Any, hint: str = "return a NumPy array or a torch tensor") -> np.ndarray:
        try:
            out = np.asarray(_numpy(value), dtype=float)
        except (TypeError, ValueError, RuntimeError):
            self.fail(f"got {fmt(value)}, expected an array", hint)
        return out

    def close(self, got: Any, expected: Any, hint: str, alternatives: Sequence[Tuple[Any, str]] = (),
              shape_hint: str = "", atol: float = 1e-6, rtol: float = 1e-5) -> None:
        """Compare arrays; on a mismatch, an alternative that equals ``got`` names the mistake."""
        expected = np.asarray(_numpy(expected), dtype=float)
        got = self.array(got)
        if got.shape == expected.shape and np.allclose(got, expected, rtol=rtol, atol=atol):
            return
        for alternative, alternative_hint in alternatives:
            try:
                other = np.asarray(_numpy(alternative() if callable(alternative) else alternative), dtype=float)
            except Exception:   # an alternative that cannot be computed for this case names nothing
                continue
            if other.shape == got.shape and np.allclose(got, other, rtol=rtol, atol=atol):
                self.fail(_diff(got, expected), alternative_hint)
        self.fail(_diff(got, expected), shape_hint if shape_hint and got.shape != expected.shape else hint)

    def equal(self, got: Any, expected: Any, hint: str, alternatives: Sequence[Tuple[Any, str]] = ()) -> None:
        """Compare numbers, booleans or short lists exactly, with the same alternatives as ``close``."""
        if _same(got, expected):
            return
        problem = f"got {fmt(got)}, expected {fmt(expected)}"
        for alternative, alternative_hint in alternatives:
            if _same(got, alternative):
                self.fail(problem, alternative_hint)
        self.fail(problem, hint)


def _clean(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = re.sub(r"\s+at 0x[0-9a-fA-F]+", "", text)
    return text if len(text) <= 160 else text[:157] + "..."


def _error_hint(error: BaseException) -> str:
    text = str(error).lower()
    if any(word in text for word in ("size", "shape", "dimension", "mat1", "broadcast")):
        return "a shape does not fit: print the shapes of your intermediate results for the case above"
    return "call it yourself on the case above and read the traceback"


@contextmanager
def _isolated() -> Iterator[None]:
    """Seeded random numbers, gradients on, warnings off, one CPU thread (the cases are tiny, and on a
    busy CPU more threads only wait for each other); the learner's settings given back afterwards."""
    numpy_state, python_state, grad = np.random.get_state(), random.getstate(), torch.is_grad_enabled()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.default_generator.manual_seed(0)
        np.random.seed(0)
        random.seed(0)
        torch.set_grad_enabled(True)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)
            torch.set_grad_enabled(grad)
            torch.set_num_threads(threads)


TIME_LIMIT_VARIABLE = "CNNCOURSE_CHECK_TIMEOUT"


class _TooLong(BaseException):
    """Raised in the learner's code when a check runs past its time limit (not an Exception, so that
    ``except Exception`` in the learner's code does not swallow it)."""


def _time_limit() -> float:
    """Seconds a check may take, from CNNCOURSE_CHECK_TIMEOUT; 0 (no limit) when unset or not a number."""
    try:
        seconds = float(os.environ.get(TIME_LIMIT_VARIABLE, "0"))
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


def _disarm() -> None:
    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise _TooLong after ``seconds``, and again every second should the learner's code swallow it;
    only where the platform has SIGALRM and in the main thread (signals go there), otherwise no limit."""
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _TooLong()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        _disarm()
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)


def _run(name: str, body: Callable[[Tester, Any], None], answer: Any) -> Result:
    tester, limit = Tester(name), _time_limit()
    try:
        if answer is None:
            return Result(False, f"✗ `{name}` is None. Hint: run the cell that defines `{name}`, then this one")
        if not callable(answer):
            return Result(False, f"✗ `{name}` is {fmt(answer)}, not a function or a class. "
                                 f"Hint: pass `{name}` itself, without calling it")
        with _isolated(), _deadline(limit):
            body(tester, answer)
    except _TooLong:
        _disarm()   # should it have gone off just as the deadline was being taken down
        return Result(False, f"✗ the check took longer than {limit:g} s: it was stopped in {tester.label}. "
                             f"Hint: look for a loop in `{name}` that never ends, and call it yourself on that case",
                      tester.cases)
    except Mismatch as mismatch:
        return Result(False, f"✗ {tester.label}: {mismatch.problem}. Hint: {mismatch.hint}", tester.cases)
    except Forbidden as forbidden:
        return Result(False, f"✗ {tester.label}: your code calls {forbidden.name}, which this exercise asks you "
                             f"to write yourself. Hint: {forbidden.hint}", tester.cases)
    except NotImplementedError as error:
        if not str(error):
            return Result(False, f"✗ not done yet: `{name}` raises NotImplementedError. Hint: replace "
                                 "`raise NotImplementedError` with your code, run that cell, then this one")
        return Result(False, f"✗ {tester.label}: raised NotImplementedError: {_clean(error)}. "
                             f"Hint: {_error_hint(error)}", tester.cases)
    except KeyboardInterrupt:
        raise
    except BaseException as error:   # the learner's exception, whatever it is, becomes a failed Result
        message = _clean(error)
        return Result(False, f"✗ {tester.label}: raised {type(error).__name__}{': ' + message if message else ''}. "
                             f"Hint: {_error_hint(error)}", tester.cases)
    return Result(True, f"✓ passed ({tester.cases} cases)", tester.cases)


def checker(name: str) -> Callable[[Callable[[Tester, Any], None]], Callable[[Any], Result]]:
    """Turn ``body(tester, answer)`` into ``check_<name>(answer) -> Result``, which never raises
    (a class name is written in snake case: ``check_my_no_shortcut_block`` checks ``MyNoShortcutBlock``)."""
    def decorate(body: Callable[[Tester, Any], None]) -> Callable[[Any], Result]:
        def check(answer: Any = None) -> Result:
            return _run(name, body, answer)
        check.__name__ = check.__qualname__ = "check_" + re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
        check.__doc__ = body.__doc__
        check.__module__ = body.__module__
        return check
    return decorate


@contextmanager
def forbid(*names: str, hint: str) -> Iterator[None]:
    """While the learner's code runs, ``torch.nn.functional.<name>`` and ``torch.<name>`` raise
    :class:`Forbidden` (an exercise that asks for something from scratch); restored afterwards."""
    saved: List[Tuple[Any, str, Any]] = []

    def refuse(name: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise Forbidden(f"{name}()", hint)
        return refused

    for name in names:
        for owner, prefix in ((F, "F."), (torch, "torch.")):
            if hasattr(owner, name):
                saved.append((owner, name, getattr(owner, name)))
                setattr(owner, name, refuse(prefix + name))
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def transfer(tester: Tester, source: nn.Module, target: nn.Module) -> None:
    """Copy ``source``'s weights and BatchNorm statistics into ``target`` layer by layer, matching
    Conv2d, Linear and BatchNorm layers by type, in order, and by shape; so any attribute names and
    any order of definition work, as long as the layers are the same."""
    kinds = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d)
    for kind in kinds:
        sources = [m for m in source.modules() if type(m) is kind]
        targets = [m for m in target.modules() if type(m) is kind]
        if len(sources) != len(targets):
            tester.fail(f"{len(targets)} {kind.__name__} layers, expected {len(sources)}",
                        "build the same layers as the block described above, no more and no fewer")
        unused = list(sources)
        for layer in targets:
            match = next((m for m in unused if m.weight.shape == layer.weight.shape), None)
            if match is None:
                tester.fail(f"a {kind.__name__} with weight shape {tuple(layer.weight.shape)} that the block "
                            "does not have", "check the channel counts and kernel sizes of your layers")
            unused.remove(match)
            state = {key: value for key, value in match.state_dict().items() if key in layer.state_dict()}
            if layer.state_dict().keys() - state.keys():
                tester.fail(f"a {kind.__name__} with a bias where the block has none",
                            "compare the bias= setting of each of your layers with the block described above")
            layer.load_state_dict(state, strict=False)
