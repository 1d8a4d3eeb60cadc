"""Regenerate README's results table and goal checks from results/*/metrics.json, its table of the
controlled experiments from results/controlled.json, its speedrun tables from results/speedrun-mnist/
and results/speedrun-cifar10/, its transfer and residual-learning studies (results/transfer-cifar10/,
results/residual-mnist/), and its speed table
from results/benchmarks/train_speed_cpu.json (``--check`` only compares)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from cnncourse import depth, transfer
from cnncourse.reference import controlled_table, goals, table
from cnncourse.speedrun_records import recorded_tables, speedrun_table, trick_table

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
SPEED_START, SPEED_END = "<!-- speed:start -->", "<!-- speed:end -->"
CONTROLLED_START, CONTROLLED_END = "<!-- controlled:start -->", "<!-- controlled:end -->"
SPEEDRUN_START, SPEEDRUN_END = "<!-- speedrun:start -->", "<!-- speedrun:end -->"
CIFAR_START, CIFAR_END = "<!-- speedrun-cifar10:start -->", "<!-- speedrun-cifar10:end -->"
TRANSFER_START, TRANSFER_END = "<!-- transfer:start -->", "<!-- transfer:end -->"
DEPTH_START, DEPTH_END = "<!-- residual:start -->", "<!-- residual:end -->"
SPEED_JSON = "results/benchmarks/train_speed_cpu.json"


def speed_table(report: dict) -> str:
    """The benchmark's figures (benchmarks/train_speed.py --json) as README's Markdown table."""
    hw = report["hardware"]
    commit = report.get("git_commit")
    made = (f"`{report['command']}` at commit {commit[:7]}" if commit else "benchmarks/train_speed.py")
    features = f", CPU features: {hw['cpu_features']}" if hw.get("cpu_features") else ""
    lines = [f"Measured with {made} on {hw['cpu']}{features} ({hw['logical_cpus']} logical CPUs, {hw['torch_threads']} torch "
             f"threads, GPU: {hw['gpu']}), torch {hw['torch']}, median of {report['repeats']} runs, warm-up "
             f"excluded; the script's JSON output is [`{SPEED_JSON}`]({SPEED_JSON}):",
             "",
             "| case | articles' way (best DataLoader setting) | fast path | ratio |",
             "|---|---|---|---|"]
    for case in report["cases"]:
        best, fast = case["best_article"], case["medians"]["cnncourse fast path"]
        lines.append(f"| {case['title']} | {best:,.0f} images/s | {fast:,.0f} images/s | {fast / best:.2f}x |")
        if case.get("extra"):
            extra = case["medians"][case["extra"]]
            lines.append(f"| the same, {case['extra']} | {best:,.0f} images/s | {extra:,.0f} images/s | "
                         f"{extra / best:.2f}x |")
    return "\n".join(lines)


def _replace(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def render(readme: str) -> str:
    results = README.parent / "results"
    readme = _replace(readme, START, END, f"{table(results)}\n\nThe goals and the articles' figures, checked "
                                          f"against the same files:\n\n{goals(results)}")
    readme = _replace(readme, CONTROLLED_START, CONTROLLED_END, controlled_table(results))
    readme = _replace(readme, SPEEDRUN_START, SPEEDRUN_END, f"{speedrun_table(path=results)}\n\n{trick_table(path=results)}")
    readme = _replace(readme, CIFAR_START, CIFAR_END, recorded_tables(results))
    readme = _replace(readme, TRANSFER_START, TRANSFER_END, transfer.recorded_table(results))
    readme = _replace(readme, DEPTH_START, DEPTH_END, depth.recorded_table(results))
    speed = json.loads((README.parent / SPEED_JSON).read_text())
    return _replace(readme, SPEED_START, SPEED_END, speed_table(speed))


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
    print(updated.split(SPEED_START, 1)[1].split(SPEED_END, 1)[0].strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
