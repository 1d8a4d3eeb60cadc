"""The notebooks' exercises: every reference solution in solutions/ passes its check, every blank stub
and every plausible mistake in solutions/mistakes.py fails with the hint it should give, and no check
raises, whatever the learner hands it."""
from __future__ import annotations

import html
import importlib.util
import random
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnncourse.exercises import NOTEBOOKS, Result, all_exercises

REPO = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    """A module of solutions/ by path (the folder is not a package that pytest puts on sys.path)."""
    spec = importlib.util.spec_from_file_location(f"course_solutions_{name}", REPO / "solutions" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOLUTIONS = {notebook: _load(notebook) for notebook in NOTEBOOKS}
MISTAKES = _load("mistakes").MISTAKES
EXERCISES = [(notebook, exercise) for notebook, exercises in all_exercises().items() for exercise in exercises]
IDS = [f"{notebook}.{exercise.name}" for notebook, exercise in EXERCISES]


class LearnerError(Exception):
    """An exception type the checks cannot know about."""


def _raises(error: BaseException):
    def answer(*args, **kwargs):
        raise error
    return answer


class BrokenModule(torch.nn.Module):
    def __init__(self, *args):
        super().__init__()
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x2)")


GARBAGE = {
    "None instead of a function": None,
    "a number instead of a function": 42,
    "a stub that returns None": lambda *args, **kwargs: None,
    "an ellipsis stub": lambda *args, **kwargs: ...,
    "a ValueError": _raises(ValueError("bad value")),
    "an unknown exception": _raises(LearnerError()),
    "a ZeroDivisionError": _raises(ZeroDivisionError("division by zero")),
    "sys.exit()": _raises(SystemExit(3)),
    "a string": lambda *args, **kwargs: "garbage",
    "an object": lambda *args, **kwargs: object(),
    "a wrong-shaped array": lambda *args, **kwargs: np.zeros(7),
    "NaN": lambda *args, **kwargs: float("nan"),
    "a 3x3 tensor": lambda *args, **kwargs: torch.zeros(3, 3),
    "a module that cannot be built": BrokenModule,
}


# The number of hidden cases each check runs on the reference solution: a case dropped from a check
# (or one that stops running) fails test_the_reference_solution_passes. Add a case: raise its count.
HIDDEN_CASES = {"conv_params": 5, "stack_output_size": 8, "conv2d_strided": 6, "learn_filter": 2,
                "avg_pool_via_conv": 4, "group_norm": 4, "train_accumulating": 3, "one_cycle_lr": 3,
                "random_crop_flip": 5, "eval_accuracy": 2, "topk_error": 4, "MyNoShortcutBlock": 9,
                "shortcut_parameters": 5, "option_a_shortcut": 4, "resnet34_params": 3, "KerasBottleneck": 9,
                "keras_param_total": 4, "global_avg_pool": 3, "live_taps": 9, "my_stratified_split": 3,
                "receptive_field": 6, "vgg_config": 5, "vgg_params": 5, "my_dropout": 5,
                "conv1x1_by_matmul": 3, "bottleneck_macs": 7, "rotate_flip": 2, "confusion_matrix": 3, "smoothgrad": 3,
                "integrated_gradients": 3, "class_activation_map": 3, "heatmap_on_image": 3,
                "prepare_for_fine_tuning": 3,
                "strided_patches": 4, "resize_pos_embed": 4, "masked_attention": 4, "gated_block_params": 4,
                "whitening_matrix": 3, "shift_images": 3, "alternating_flip": 4, "six_view_logits": 3}


def test_every_notebook_has_at_least_four_exercises():
    exercises = all_exercises()
    assert list(exercises) == list(NOTEBOOKS)
    for notebook, listed in exercises.items():
        assert len(listed) >= 4, notebook
        module = importlib.import_module(f"cnncourse.exercises.{notebook}")
        for exercise in listed:
            snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", exercise.name).lower()   # MyNoShortcutBlock: my_no_shortcut_block
            assert exercise.check.__name__ == f"check_{snake}"
            assert getattr(module, f"check_{snake}") is exercise.check
    names = [exercise.name for _, exercise in EXERCISES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("notebook, exercise", EXERCISES, ids=IDS)
def test_the_reference_solution_passes(notebook, exercise):
    result = exercise.check(getattr(SOLUTIONS[notebook], exercise.name))
    assert isinstance(result, Result)
    assert result.passed, result.message
    assert result.message == f"✓ passed ({result.cases} cases)" and result.cases == HIDDEN_CASES[exercise.name]


@pytest.mark.parametrize("notebook, exercise", EXERCISES, ids=IDS)
def test_the_blank_stub_fails_and_says_so(notebook, exercise):
    assert exercise.name in exercise.stub and "raise NotImplementedError" in exercise.stub
    stub = exercise.stub_answer()
    assert stub.__doc__, "the stub explains the task in its docstring"
    result = exercise.check(stub)
    assert not result and result.message.startswith("✗ not done yet")
    assert exercise.check(exercise.stub_answer()).message == result.message   # a stored output stays the same


@pytest.mark.parametrize("notebook, exercise", EXERCISES, ids=IDS)
def test_each_plausible_mistake_gets_its_hint(notebook, exercise):
    mistakes = MISTAKES[f"{notebook}.{exercise.name}"]
    assert mistakes, "every exercise has at least one plausible wrong answer"
    for wrong, words in mistakes:
        result = exercise.check(wrong)
        assert not result.passed, f"{wrong.__name__} passed"
        assert "Hint: " in result.message
        assert words in result.message, f"{wrong.__name__}: {result.message}"


@pytest.mark.parametrize("notebook, exercise", EXERCISES, ids=IDS)
def test_a_check_never_raises(notebook, exercise):
    for what, answer in GARBAGE.items():
        result = exercise.check(answer)
        assert isinstance(result, Result) and not result.passed, what
        message = result.message
        assert message.startswith("✗ ") and "Hint: " in message, (what, message)
        assert repr(result) == str(result) == message
        assert html.escape(message) in result._repr_html_()
        assert " at 0x" not in message and "<function" not in message and "<lambda>" not in message, message
        assert exercise.check(answer).message == message, what


def test_checks_give_the_learners_random_state_threads_and_functions_back():
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    threads, avg_pool2d, dropout = torch.get_num_threads(), F.avg_pool2d, F.dropout
    by_name = {exercise.name: (notebook, exercise) for notebook, exercise in EXERCISES}
    for name in ("random_crop_flip", "my_dropout", "learn_filter"):
        notebook, exercise = by_name[name]
        assert exercise.check(getattr(SOLUTIONS[notebook], name)).passed
    for name, mistake in (("avg_pool_via_conv", "avg_pool_library"), ("my_dropout", "dropout_library")):
        notebook, exercise = by_name[name]
        wrong = next(answer for answer, _ in MISTAKES[f"{notebook}.{name}"] if answer.__name__ == mistake)
        assert "calls" in exercise.check(wrong).message
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    assert torch.get_num_threads() == threads
    assert F.avg_pool2d is avg_pool2d and F.dropout is dropout and torch.is_grad_enabled()


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_exercise_belongs_to_a_section_of_its_notebook(notebook):
    number = notebook[2:]
    sources = sorted((REPO / "sources").glob(f"{number}_*.py"))
    if not sources:
        pytest.skip(f"no notebook source for {notebook}")
    headings = {line[len("# ## "):].strip() for line in sources[0].read_text(encoding="utf-8").splitlines()
                if line.startswith("# ## ")}
    for exercise in all_exercises()[notebook]:
        assert exercise.section in headings, f"{exercise.name}: no section '## {exercise.section}' in {sources[0].name}"
