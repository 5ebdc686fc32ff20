"""Ratios pair a contender with the floor of the same run, and failures stay visible."""

from __future__ import annotations

from benchmarks import report


def test_ratios_pair_runs_and_skip_failed_ones() -> None:
    floor: report.Runs = [{"synced_s": 1.0}, {"synced_s": 2.0}, {"synced_s": 4.0}]
    mine: report.Runs = [{"synced_s": 3.0}, {"error": "boom"}, {"synced_s": 8.0}]

    assert report.paired_ratios(mine, floor, report.synced_s) == [3.0, 2.0]


def test_spread_gives_median_and_extremes() -> None:
    stat = report.spread([3.0, 1.0, 2.0])

    assert stat is not None
    assert (stat["median"], stat["min"], stat["max"], stat["n"]) == (2.0, 1.0, 3.0, 3)


def test_status_names_why_a_contender_has_no_figure() -> None:
    assert report.status([{"unavailable": "no go"}]) == "unavailable: no go"
    assert report.status([{"synced_s": 1.0}, {"error": "x"}]) is None
