"""The summary of `scripts/gpu_check.sh`: what worked on a GPU box, how long each step took, how fast.

The script runs each step itself and appends one line per step to `<out>/steps.jsonl`
(`{"step", "status", "seconds", "log"}`); the steps leave their outputs beside it under fixed
names (`FILES`). This module reads them back and writes one table, `<out>/summary.json` and
`<out>/summary.md`, and prints the Markdown. Reading and writing need only the standard library,
so the summary is written even when setting up (and so torch and duo-ai) failed. A tool of the
script, not of the package: it is not installed with duo-ai.

    python scripts/gpu_check.py summary --out DIR     # exit 0 if every step passed, else 1
    python scripts/gpu_check.py machine --json FILE   # torch, CUDA and the GPUs; exit 1 without CUDA
    python scripts/gpu_check.py compare A.ckpt B.ckpt --json FILE   # weights equal? exit 1 if not
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

# What each step leaves in the output folder, read back for its row of the table.
FILES = {
    "machine": "machine.json",
    "cuda_tests": "cuda_tests.xml",
    "bench_bf16": "bench_bf16.json",
    "bench_fp32": "bench_fp32.json",
    "train": "train/summary.json",
    "train_info": "train/run_info.json",
    "eval": "eval.json",
    "ddp_compare": "ddp_resume.json",
}
# The bench figures of the summary, in the order of its table: (key, label, format).
BENCH_ROWS = (
    ("train_sps", "training loop (SPS)", ",.0f"),
    ("env_sps", "environment only (SPS)", ",.0f"),
    ("bound_sps", "compute bound (SPS)", ",.0f"),
    ("loop_efficiency", "loop efficiency (loop / bound)", ".1%"),
    ("inference_ms_per_step", "inference per step (ms)", ".2f"),
    ("update_seconds_per_iteration", "update per iteration (s)", ".2f"),
    ("peak_gpu_memory_mb", "peak GPU memory allocated (MB)", ",.0f"),
    ("gpu_memory_reserved_mb", "GPU memory reserved (MB)", ",.0f"),
    ("peak_rss_mb", "peak host memory (MB)", ",.0f"),
)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's object, or None where the step that writes it did not."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_steps(out: Path) -> list[dict[str, Any]]:
    """The steps the script recorded, in the order they ran (unreadable lines are skipped)."""
    steps = []
    path = out / "steps.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            steps.append(json.loads(line))
        except ValueError:
            continue
    return steps


def test_counts(path: Path) -> dict[str, int] | None:
    """passed / failed / skipped counts of a pytest `--junitxml` report."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = total["failures"] + total["errors"]
    return {"passed": total["tests"] - failed - total["skipped"], "failed": failed, "skipped": total["skipped"]}


def bench_figures(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The figures of one `duo-ai bench --json` report that the summary shows."""
    if report is None:
        return None
    bound, settings = report.get("bound", {}), report.get("settings", {})
    figures = {key: report.get(key, bound.get(key)) for key, _, _ in BENCH_ROWS}
    figures["settings"] = {k: settings.get(k) for k in ("device", "precision", "num_envs", "num_steps", "world_size")}
    return figures


def details(out: Path) -> dict[str, Any]:
    """What each step's outputs say, by step name (None where a step wrote nothing)."""
    train, info = read_json(out / FILES["train"]), read_json(out / FILES["train_info"])
    return {
        "machine": read_json(out / FILES["machine"]),
        "cuda_tests": test_counts(out / FILES["cuda_tests"]),
        "bench_bf16": bench_figures(read_json(out / FILES["bench_bf16"])),
        "bench_fp32": bench_figures(read_json(out / FILES["bench_fp32"])),
        "train": None if train is None else {**train, **{k: (info or {}).get(k) for k in ("device", "precision")}},
        "eval": read_json(out / FILES["eval"]),
        "ddp_compare": read_json(out / FILES["ddp_compare"]),
    }


def fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def result_line(step: str, detail: dict[str, Any] | None) -> str:
    """One short line of what a step showed, for the table."""
    if not detail:
        return ""
    if step == "machine":
        gpus = detail.get("gpus") or []
        names = ", ".join(sorted({g["name"] for g in gpus})) or "none"
        return f"{len(gpus)} x {names}; torch {detail.get('torch')}, CUDA {detail.get('cuda')}"
    if step == "cuda_tests":
        return f"{detail['passed']} passed, {detail['failed']} failed, {detail['skipped']} skipped"
    if step.startswith("bench_"):
        return (
            f"{fmt(detail['train_sps'], ',.0f')} SPS (env only {fmt(detail['env_sps'], ',.0f')}, "
            f"bound {fmt(detail['bound_sps'], ',.0f')}, efficiency {fmt(detail['loop_efficiency'], '.0%')}), "
            f"GPU {fmt(detail['peak_gpu_memory_mb'], ',.0f')} MB"
        )
    if step == "train":
        return (
            f"{detail.get('global_step', 0):,} steps at {fmt(detail.get('sps'), ',.0f')} SPS "
            f"on {detail.get('device')} ({detail.get('precision')})"
        )
    if step == "eval":
        return f"return {fmt(detail.get('reward_mean'), '.2f')} over {detail.get('num_episodes')} episodes"
    if step == "ddp_compare":
        if detail.get("error"):
            return detail["error"]
        if detail.get("identical"):
            return "resumed weights bit-identical to the uninterrupted run"
        return f"{detail.get('tensors_differ')} tensors differ, max |diff| {fmt(detail.get('max_abs_diff'), '.3g')}"
    return ""


def summarise(out: Path) -> dict[str, Any]:
    """The summary of the steps recorded in `out`, with each step's detail and result line."""
    found = details(out)
    steps = []
    for step in read_steps(out):
        name = step.get("step", "?")
        detail = found.get(name)
        steps.append({**step, "detail": detail, "result": result_line(name, detail)})
    return {
        "ok": bool(steps) and all(s.get("status") in ("ok", "skipped") for s in steps),
        "total_seconds": sum(float(s.get("seconds") or 0) for s in steps),
        "machine": found["machine"],
        "steps": steps,
        "bench": {"bf16": found["bench_bf16"], "fp32": found["bench_fp32"]},
    }


def markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown: the steps' table, then bf16 against fp32 at the recipe shape."""
    verdict = "every step passed" if summary["ok"] else "a step failed"
    lines = [f"# duo-ai GPU check: {verdict}", ""]
    machine = summary.get("machine")
    if machine:
        cpu = f"CPU {machine.get('cpu')}, {machine.get('cpus')} cores"
        lines += [f"Machine: {result_line('machine', machine)}; {cpu}.", ""]
    lines += ["| step | status | seconds | result |", "|---|---|---:|---|"]
    for s in summary["steps"]:
        result = s["result"] or (f"see {s['log']}" if s.get("log") and s.get("status") != "ok" else "")
        note = f" ({s['note']})" if s.get("note") else ""
        lines.append(f"| {s.get('step')} | {s.get('status')} | {fmt(s.get('seconds'), '.1f')} | {result}{note} |")
    lines += [f"| total | | {summary['total_seconds']:.1f} | |", ""]
    bench = summary["bench"]
    if any(bench.values()):
        shape = next(b["settings"] for b in bench.values() if b)
        lines += [f"`duo-ai bench` at {shape.get('num_envs')} envs x {shape.get('num_steps')} steps:", ""]
        lines += ["| measure | bf16 | fp32 |", "|---|---:|---:|"]
        for key, label, spec in BENCH_ROWS:
            cells = [fmt((bench[p] or {}).get(key), spec) for p in ("bf16", "fp32")]
            lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
        lines.append("")
    return "\n".join(lines)


def write_summary(out: Path) -> dict[str, Any]:
    """Write `out`/summary.json and `out`/summary.md; returns the summary."""
    summary = summarise(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    return summary


def machine() -> dict[str, Any]:
    """torch's view of the machine: versions, CUDA devices, CPU."""
    import os
    import platform

    import torch

    cuda = torch.cuda.is_available()
    gpus = [
        {"name": torch.cuda.get_device_name(i), "memory_gb": torch.cuda.get_device_properties(i).total_memory / 2**30}
        for i in range(torch.cuda.device_count() if cuda else 0)
    ]
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": cuda,
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "gpus": gpus,
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def compare(a: Path, b: Path) -> dict[str, Any]:
    """Whether two checkpoints hold the same weights, bit for bit, and by how much they differ."""
    import torch

    from duo_ai.core.checkpoint import load_checkpoint
    from duo_ai.core.errors import CheckpointError

    try:
        wa, wb = (load_checkpoint(p)["model_state_dict"] for p in (a, b))
    except CheckpointError as error:  # a run that failed left none: say so in the summary, no traceback
        return {"identical": False, "tensors_differ": None, "max_abs_diff": None, "error": str(error)}
    if wa.keys() != wb.keys():
        return {"identical": False, "tensors_differ": len(wa.keys() ^ wb.keys()), "max_abs_diff": None}
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    diff = max(((wa[k].double() - wb[k].double()).abs().max().item() for k in differ), default=0.0)
    return {"identical": not differ, "tensors_differ": len(differ), "max_abs_diff": diff, "a": str(a), "b": str(b)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/gpu_check.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("summary", help="write summary.json and summary.md").add_argument("--out", type=Path, required=True)
    sub.add_parser("machine", help="torch, CUDA and the GPUs").add_argument("--json", type=Path, required=True)
    cmp = sub.add_parser("compare", help="are two checkpoints' weights equal?")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    cmp.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "summary":
        summary = write_summary(args.out)
        print(markdown(summary))
        return 0 if summary["ok"] else 1
    if args.command == "machine":
        found = machine()
        passed = found["cuda_available"]
    else:
        found = compare(args.a, args.b)
        passed = found["identical"]
    args.json.write_text(json.dumps(found, indent=2) + "\n")
    print(json.dumps(found))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
