"""Run the side-by-side benchmarks: `python -m benchmarks [--quick]` from the repository root.

Prints a markdown report, and writes `benchmarks/results/latest.json` (raw runs, summaries,
the machine), `latest.md` and PNG plots beside it (`--server real`: `latest-real.json` and
`latest-real.md`). Progress goes to stderr, one line per
contender and run. Every figure is a ratio to the floor measured in the same run, or a count;
absolute times on a shared machine only say how busy it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _check_imports() -> str | None:
    missing = []
    for module in ("httpx", "orjson", "matplotlib"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        return (f"missing Python packages: {', '.join(missing)}. Run benchmarks/run.sh, which "
                "makes benchmarks/.venv from benchmarks/requirements.txt.")
    return None


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, 3 runs: about two minutes")
    parser.add_argument("--runs", type=int, help="runs per contender (default 5, quick 3)")
    parser.add_argument("--workloads", default="sync,watch,share,dispose,idle",
                        help="comma-separated subset of sync,watch,share,dispose,idle")
    parser.add_argument("--only", help="comma-separated contenders (the floor always runs)")
    parser.add_argument("--server", choices=("replay", "real"), default="replay",
                        help="real: initial sync against a local kube-apiserver instead")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return parser.parse_args(argv)


def _meta(args: argparse.Namespace, sizes: Any) -> dict[str, Any]:
    return {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "server": args.server,
        "sizes": dataclasses.asdict(sizes),
        "seed": args.seed,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }


def _versions(raw: dict[str, Any]) -> dict[str, str]:
    """Each contender's version as its driver reported it."""
    found: dict[str, str] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "contender" in node and "version" in node:
                found.setdefault(node["contender"], node["version"])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(raw)
    return found


def main(argv: list[str] | None = None) -> int:
    problem = _check_imports()
    if problem:
        sys.stderr.write(problem + "\n")
        return 2
    # Imported once the check above passed, so a missing package gets a sentence, not a trace.
    from benchmarks import harness, real_server, report, workloads  # noqa: PLC0415

    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    sizes = workloads.QUICK if args.quick else workloads.FULL
    if args.runs:
        sizes = dataclasses.replace(sizes, runs=args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = workloads.Context(
        contenders=harness.contenders(), sizes=sizes, seed=args.seed, log_dir=args.out / "logs",
        only=frozenset(args.only.split(",")) if args.only else None,
    )
    meta = _meta(args, sizes)

    started = time.monotonic()
    raw: dict[str, Any] = {}
    if args.server == "real":
        raw["real"] = real_server.real(ctx)
    else:
        for name in args.workloads.split(","):
            raw[name] = workloads.WORKLOADS[name](ctx)
    meta["duration_s"] = round(time.monotonic() - started, 1)
    meta["load_average_at_end"] = os.getloadavg()
    meta["versions"] = _versions(raw)

    markdown, summaries = report.build(raw)
    markdown = _header(meta, sizes.runs) + markdown
    # A real-server run keeps its own files, so it never overwrites the replay results.
    stem = "latest" if args.server == "replay" else "latest-real"
    if args.server == "replay":
        meta["plots"] = [path.name for path in report.plot(summaries, args.out)]

    with open(args.out / f"{stem}.json", "w") as file:
        json.dump({"meta": meta, "summaries": summaries, "raw": raw}, file, indent=1)
    (args.out / f"{stem}.md").write_text(markdown)
    sys.stdout.write(markdown + "\n")
    return 0


def _header(meta: dict[str, Any], runs: int) -> str:
    base = "the floor" if meta["server"] == "replay" else "client-go"
    return (
        f"## rx_informer benchmarks ({meta['mode']}, {runs} runs, {meta['started']}, "
        f"{meta['cpus']} CPUs, load {meta['load_average_at_start'][0]:.1f})\n\n"
        f"Median [min to max] over runs; every ratio is paired with {base} of the same run.\n\n"
        "Versions: " + "; ".join(meta["versions"].values()) + "\n\n"
    )


if __name__ == "__main__":
    sys.exit(main())
