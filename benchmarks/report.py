"""From raw runs to figures: ratios paired per run, medians with spread, tables and plots.

A ratio is always taken inside one run (contender / floor of the same run) and only then
summarised, so a slow moment of the machine hits both sides of it.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Runs = list[dict[str, Any]]
Metric = Callable[[dict[str, Any]], float | None]


def _ok(result: dict[str, Any]) -> bool:
    return "error" not in result and "unavailable" not in result


def spread(values: list[float]) -> dict[str, float] | None:
    """Median, min, max and quartiles of the values (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else ordered * 3
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1],
            "q1": quartiles[0], "q3": quartiles[2], "n": len(ordered)}


def values(runs: Runs, metric: Metric) -> list[float]:
    found = [metric(result) for result in runs if _ok(result)]
    return [value for value in found if value is not None]


def paired_ratios(runs: Runs, floor: Runs, metric: Metric) -> list[float]:
    """metric(contender) / metric(floor), run by run; runs where either failed are dropped."""
    ratios = []
    for mine, base in zip(runs, floor, strict=False):
        if not (_ok(mine) and _ok(base)):
            continue
        top, bottom = metric(mine), metric(base)
        if top is not None and bottom:
            ratios.append(top / bottom)
    return ratios


def status(runs: Runs) -> str | None:
    """Why a contender has no figure: 'unavailable: ...' or its first error."""
    if any(_ok(result) for result in runs):
        return None
    for result in runs:
        if "unavailable" in result:
            return f"unavailable: {result['unavailable']}"
        if "error" in result:
            return f"error: {result['error']}"
    return "no runs"


def _fmt(stat: dict[str, float] | None, digits: int = 2, unit: str = "") -> str:
    if stat is None:
        return "n/a"
    median = f"{stat['median']:.{digits}f}{unit}"
    if stat["n"] < 2:
        return median
    return f"{median} [{stat['min']:.{digits}f} to {stat['max']:.{digits}f}]"


def _short(reason: str) -> str:
    return reason if len(reason) <= 90 else reason[:87] + "..."


# -- metrics ----------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def synced_s(result: dict[str, Any]) -> float | None:
    return _number(result.get("synced_s"))


def events_s(result: dict[str, Any]) -> float | None:
    return _number(result.get("events_s") or None)


def events_per_s(result: dict[str, Any]) -> float | None:
    seconds = result.get("events_s")
    return result["events_seen"] / seconds if seconds else None


def cpu_per_1k_events(result: dict[str, Any]) -> float | None:
    seen = result.get("events_seen")
    return result["cpu_events_s"] / seen * 1000 if seen else None


def growth_per_object(result: dict[str, Any]) -> float | None:
    objects = result.get("objects")
    if not objects or "rss_synced_kb" not in result:
        return None
    return float(result["rss_synced_kb"] - result["rss_start_kb"]) * 1024 / int(objects)


def idle_cpu_percent(result: dict[str, Any]) -> float | None:
    if "cpu_idle_s" not in result:
        return None
    return float(result["cpu_idle_s"]) / float(result["idle_s"]) * 100


# -- sections ---------------------------------------------------------------------------------

def sync_section(data: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    lines = []
    summary: dict[str, Any] = {}
    for pods, block in data["sizes"].items():
        cases = block["cases"]
        floor = cases.get("floor", [])
        lines += [f"### Initial sync, {pods} pods (replay)", "",
                  "| contender | seconds to SYNCED | ratio to floor | objects cached |",
                  "|---|---|---|---|"]
        summary[pods] = {}
        for label, runs in cases.items():
            if "(" in label:
                continue
            problem = status(runs)
            if problem:
                lines.append(f"| {label} | {_short(problem)} | | |")
                continue
            seconds = spread(values(runs, synced_s))
            ratio = spread(paired_ratios(runs, floor, synced_s))
            objects = _objects(runs, int(pods))
            summary[pods][label] = {"synced_s": seconds, "ratio_to_floor": ratio,
                                    "objects": objects}
            lines.append(f"| {label} | {_fmt(seconds, 3)} | {_fmt(ratio)}x | {objects} |")
        lines.append("")
    return lines, summary


def _objects(runs: Runs, expected: int) -> str:
    counts = sorted({int(result["objects"]) for result in runs
                     if _ok(result) and result.get("objects") is not None})
    if counts == [expected]:
        return str(expected)
    return f"{'/'.join(map(str, counts))} of {expected} (incomplete)"


def memory_section(data: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    pods = str(data["largest"])
    block = data["sizes"][pods]
    cases = block["cases"]
    json_bytes = block["json_bytes_per_pod"]
    lines = [f"### Cache memory after {pods} pods (JSON: {json_bytes:.0f} bytes per pod)", "",
             "RSS growth from before the informer starts to after sync (garbage collected), "
             "per cached object; the ratio divides it by the JSON bytes of one pod. Peak RSS "
             "is the process's high-water mark (VmHWM) without the transform.", "",
             "| contender | bytes per object | ÷ JSON bytes | managedFields dropped: bytes "
             "per object | ÷ JSON bytes | peak RSS (MB) |", "|---|---|---|---|---|---|"]
    summary: dict[str, Any] = {}
    for label, runs in cases.items():
        if "(transform)" in label:
            continue
        transformed = cases.get(label + " (transform)")
        plain = _memory_figures(runs, json_bytes)
        extra = _memory_figures(transformed, json_bytes) if transformed else None
        peak = spread(values(runs, lambda result: result["hwm_kb"] / 1024))
        summary[label] = {"plain": plain, "transform": extra, "peak_rss_mb": peak}
        lines.append(f"| {label} | {_memory_cells(runs, plain)} | "
                     f"{_memory_cells(transformed, extra) if transformed else 'n/a | n/a'} | "
                     f"{_fmt(peak, 0)} |")
    lines += ["", "The floor keeps nothing; `floor (dict cache)` keeps the decoded dicts in a "
              "plain dict, the least a Python cache can hold.", ""]
    return lines, summary


def _memory_figures(runs: Runs, json_bytes: float) -> dict[str, Any] | None:
    per_object = values(runs, growth_per_object)
    if not per_object:
        return None
    return {"bytes_per_object": spread(per_object),
            "ratio_to_json": spread([value / json_bytes for value in per_object])}


def _memory_cells(runs: Runs | None, figures: dict[str, Any] | None) -> str:
    if figures is None:
        problem = status(runs or [])
        return f"{_short(problem or 'n/a')} | "
    return (f"{_fmt(figures['bytes_per_object'], 0)} | "
            f"{_fmt(figures['ratio_to_json'], 2)}x")


def watch_section(data: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    cases = data["cases"]
    floor = cases.get("floor", [])
    lines = [f"### Watch stream, {data['events']} MODIFIED events (after a {data['pods']}-pod "
             "list)", "",
             "| contender | events/s | CPU s per 1k events | time ratio to floor |",
             "|---|---|---|---|"]
    summary: dict[str, Any] = {}
    for label, runs in cases.items():
        problem = status(runs)
        if problem:
            lines.append(f"| {label} | {_short(problem)} | | |")
            continue
        rate = spread(values(runs, events_per_s))
        cpu = spread(values(runs, cpu_per_1k_events))
        ratio = spread(paired_ratios(runs, floor, events_s))
        summary[label] = {"events_per_s": rate, "cpu_s_per_1k": cpu, "ratio_to_floor": ratio}
        lines.append(f"| {label} | {_fmt(rate, 0)} | {_fmt(cpu, 3)} | {_fmt(ratio)}x |")
    lines.append("")
    return lines, summary


def share_section(data: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    lines = [f"### Sharing one resource ({data['pods']} pods, {data['events']} events each)",
             "", "| contender | subscribers | TCP connections | watch requests | list requests "
             "| RSS after sync (MB) | events/s delivered |", "|---|---|---|---|---|---|---|"]
    summary: dict[str, Any] = {}
    for count, cases in data["subscribers"].items():
        for label, runs in cases.items():
            problem = status(runs)
            if problem:
                lines.append(f"| {label} | {count} | {_short(problem)} | | | | |")
                continue
            figures = {
                "connections": spread(values(runs, lambda r: r["server"]["api_total"])),
                "watches": spread(values(runs, lambda r: r["server"]["watch_total"])),
                "lists": spread(values(runs, lambda r: r["server"]["list_requests"])),
                "rss_mb": spread(values(runs, lambda r: r["rss_synced_kb"] / 1024)),
                "events_per_s": spread(values(runs, events_per_s)),
            }
            summary.setdefault(count, {})[label] = figures
            lines.append(
                f"| {label} | {count} | {_fmt(figures['connections'], 0)} | "
                f"{_fmt(figures['watches'], 0)} | {_fmt(figures['lists'], 0)} | "
                f"{_fmt(figures['rss_mb'], 1)} | {_fmt(figures['events_per_s'], 0)} |")
    lines.append("")
    return lines, summary


def dispose_section(data: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    if not data:
        return [], {}
    result = data["result"]
    lines = [f"### Last dispose to socket closed on the server (rx_informer, "
             f"{data['tries']} tries)", ""]
    problem = status([result])
    latencies = sorted(result.get("dispose_latencies_s", []))
    if problem or not latencies:
        lines += [problem or "no latency measured", ""]
        return lines, {"problem": problem}

    def percentile(share: float) -> float:
        # Nearest rank: the smallest value with at least `share` of the values at or below it.
        rank = max(1, math.ceil(share * len(latencies)))
        return float(latencies[rank - 1]) * 1000

    summary = {"p50_ms": percentile(0.50), "p99_ms": percentile(0.99),
               "max_ms": latencies[-1] * 1000, "timed": len(latencies),
               "not_closed": result.get("not_closed", 0)}
    lines += ["| p50 (ms) | p99 (ms) | max (ms) | timed | not closed within 5 s |",
              "|---|---|---|---|---|",
              f"| {summary['p50_ms']:.2f} | {summary['p99_ms']:.2f} | {summary['max_ms']:.2f} "
              f"| {summary['timed']} | {summary['not_closed']} |", ""]
    return lines, summary


def idle_section(data: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    lines = [f"### Idle for {data['seconds']:g} s after syncing {data['pods']} pods, no events",
             "", "| contender | CPU % of a core |", "|---|---|"]
    summary: dict[str, Any] = {}
    for label, runs in data["cases"].items():
        problem = status(runs)
        if problem:
            lines.append(f"| {label} | {_short(problem)} |")
            continue
        cpu = spread(values(runs, idle_cpu_percent))
        summary[label] = cpu
        lines.append(f"| {label} | {_fmt(cpu, 2)} |")
    lines.append("")
    return lines, summary


def real_section(data: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    if "skipped" in data:
        return [f"### Real kube-apiserver: skipped ({data['skipped']})", ""], data
    cases = data["cases"]
    base = cases.get("client-go", [])
    lines = [f"### Initial sync against a real kube-apiserver, {data['pods']} pods", "",
             "| contender | seconds to SYNCED | ratio to client-go |", "|---|---|---|"]
    summary: dict[str, Any] = {}
    for label, runs in cases.items():
        problem = status(runs)
        if problem:
            lines.append(f"| {label} | {_short(problem)} | |")
            continue
        seconds = spread(values(runs, synced_s))
        ratio = spread(paired_ratios(runs, base, synced_s))
        summary[label] = {"synced_s": seconds, "ratio_to_client_go": ratio}
        lines.append(f"| {label} | {_fmt(seconds, 3)} | {_fmt(ratio)}x |")
    lines.append("")
    return lines, summary


SECTIONS = {
    "sync": [("sync", sync_section), ("memory", memory_section)],
    "watch": [("watch", watch_section)],
    "share": [("share", share_section)],
    "dispose": [("dispose", dispose_section)],
    "idle": [("idle", idle_section)],
    "real": [("real", real_section)],
}


def build(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The markdown report and the summaries, from every workload's raw results."""
    lines: list[str] = []
    summaries: dict[str, Any] = {}
    for workload, data in raw.items():
        for name, section in SECTIONS.get(workload, []):
            section_lines, summary = section(data)
            lines += section_lines
            summaries[name] = summary
    return "\n".join(lines), summaries


# -- plots ------------------------------------------------------------------------------------

def _bars(path: Path, title: str, ylabel: str, *, labels: list[str],
          stats: list[dict[str, float]], reference: float | None = None) -> None:
    # Imported here: only a run that plots pays for matplotlib, with the file-only backend.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    medians = [stat["median"] for stat in stats]
    below = [stat["median"] - stat["min"] for stat in stats]
    above = [stat["max"] - stat["median"] for stat in stats]
    figure, axes = plt.subplots(figsize=(7.5, 4.0))
    axes.bar(labels, medians, yerr=[below, above], capsize=4, color="#4C72B0")
    if reference is not None:
        axes.axhline(reference, color="#C44E52", linestyle="--", linewidth=1)
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.tick_params(axis="x", labelrotation=20)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_ratios(path: Path, title: str, ylabel: str, table: dict[str, Any], key: str, *,
                 reference: float | None = 1.0) -> bool:
    rows = [(label, figures[key]) for label, figures in table.items()
            if isinstance(figures, dict) and figures.get(key)]
    if not rows:
        return False
    _bars(path, title, ylabel, labels=[label for label, _ in rows],
          stats=[stat for _, stat in rows], reference=reference)
    return True


def plot(summaries: dict[str, Any], out_dir: Path) -> list[Path]:
    """PNG bar charts (median, whiskers min to max) of the main figures."""
    for stale in out_dir.glob("*.png"):
        stale.unlink()
    written: list[Path] = []
    for pods, table in summaries.get("sync", {}).items():
        path = out_dir / f"sync_{pods}.png"
        if _plot_ratios(path, f"Initial sync, {pods} pods", "time / floor (same run)",
                        table, "ratio_to_floor"):
            written.append(path)
    path = out_dir / "watch.png"
    if _plot_ratios(path, "Watch stream", "time / floor (same run)",
                    summaries.get("watch", {}), "ratio_to_floor"):
        written.append(path)

    memory = {label: {"ratio": (figures.get("plain") or {}).get("ratio_to_json")}
              for label, figures in summaries.get("memory", {}).items()}
    path = out_dir / "memory.png"
    if _plot_ratios(path, "Cache memory", "RSS growth per object / JSON bytes", memory,
                    "ratio"):
        written.append(path)
    idle = {label: {"cpu": stat} for label, stat in summaries.get("idle", {}).items()}
    path = out_dir / "idle.png"
    if _plot_ratios(path, "Idle", "CPU % of one core", idle, "cpu", reference=None):
        written.append(path)
    return written
