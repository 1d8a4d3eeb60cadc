"""No exercise's answer is shown in its lesson (issue 24, item 4): no piece of a reference solution in
solutions/nbNN.py (an expression or statement of at least MIN_NODES syntax-tree nodes, compared with
local names renamed in order of appearance, so `(model(x) + model(x.flip(-1))) / 2` matches
`(net(batch) + net(batch.flip(-1))) / 2`) appears in a code cell of lesson NN."""
from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIN_NODES = 10      # syntax-tree nodes, not counting Load/Store markers
# Names compared as they are: modules and builtins; every other name is renamed.
KEEP = {"torch", "F", "nn", "np", "math", "len", "range", "sum", "min", "max", "abs", "int", "float", "zip",
        "list", "tuple", "dict", "sorted", "enumerate", "isinstance", "super", "print", "round", "self"}


class _Canonical(ast.NodeTransformer):
    """Local names become v0, v1, ... in order of first appearance."""

    def __init__(self) -> None:
        self.names: dict = {}

    def _rename(self, name: str) -> str:
        return name if name in KEEP else self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node):
        return ast.copy_location(ast.Name(id=self._rename(node.id), ctx=ast.Load()), node)

    def visit_arg(self, node):
        return ast.copy_location(ast.arg(arg=self._rename(node.arg)), node)


def canonical(node: ast.AST) -> str:
    return ast.dump(_Canonical().visit(copy.deepcopy(node)), annotate_fields=False, include_attributes=False)


def pieces(tree: ast.AST) -> dict:
    """Every expression and simple statement of at least MIN_NODES nodes, by its canonical form."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.expr, ast.Assign, ast.AugAssign, ast.Return)) and \
                sum(1 for n in ast.walk(node) if not isinstance(n, ast.expr_context)) >= MIN_NODES:
            found[canonical(node)] = node
    return found


def lesson_code(number: str) -> ast.Module:
    """The code cells of lesson NN as one module (IPython magics and shell lines dropped)."""
    path = next((REPO / "notebooks").glob(f"{number}_*.ipynb"))
    cells = json.loads(path.read_text())["cells"]
    body = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        body += ast.parse("\n".join(lines)).body
    return ast.Module(body=body, type_ignores=[])


def solution_functions(number: str) -> dict:
    tree = ast.parse((REPO / "solutions" / f"nb{number}.py").read_text())
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


# Pieces a lesson teaches and its exercise reuses in a larger answer: (lesson, piece as ast.unparse
# writes it) -> why showing it does not give the exercise away.
ALLOWED = {
    ("02", "total += loss.item() * len(labels)"):
        "the loop by hand keeps the same running loss; Exercise 2.2 asks for gradient accumulation",
    ("03", "block_stride == 1 and channels == out_channels"):
        "the lesson states the projection rule; Exercise 3.3 applies it block by block to a network",
    ("03", "channels * out_channels + 2 * out_channels"):
        "the lesson counts one projection's parameters; Exercise 3.3 finds which blocks need one",
    ("03", "channels * width + 2 * width"):
        "the lesson counts one projection's parameters; Exercise 3.5 sums whole blocks over ResNet-34",
}

NUMBERS = sorted(p.name[:2] for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def shown_answers(number: str) -> dict:
    """{exercise: the first piece of its solution that lesson NN's code shows}."""
    shown = pieces(lesson_code(number))
    found = {}
    for name, node in solution_functions(number).items():
        for key, piece in pieces(node).items():
            if key in shown and (number, ast.unparse(piece)) not in ALLOWED:
                found[name] = ast.unparse(piece)
                break
    return found


@pytest.mark.parametrize("number", NUMBERS)
def test_no_exercise_answer_appears_in_its_lesson(number):
    assert shown_answers(number) == {}, f"lesson {number} shows these answers in its code cells"


def test_the_comparison_finds_a_renamed_copy_and_ignores_a_different_formula():
    solution = ast.parse("def tta(model, images):\n    return (model(images) + model(images.flip(-1))) / 2\n")
    copied = ast.parse("with torch.no_grad():\n    z = (net(batch) + net(batch.flip(-1))) / 2\n")
    other = ast.parse("z = (net(batch) * net(batch.flip(-2))) / 2\n")
    assert set(pieces(solution)) & set(pieces(copied))
    assert not set(pieces(solution)) & set(pieces(other))
