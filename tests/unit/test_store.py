"""The fold from protocol outputs to snapshots and events."""

from __future__ import annotations

import pytest

from rx_informer import EventType
from rx_informer.errors import StatusError
from rx_informer.protocol.machine import (
    Applied,
    Failure,
    Output,
    Progressed,
    Relisted,
    Removed,
    Resynced,
)
from rx_informer.protocol.wire import WireObject
from rx_informer.store.reducer import Reducer, Step
from tests.support.fake_api import pod as pod_dict


def pod(name: str, version: int, **extra: object) -> WireObject:
    return WireObject.from_dict(pod_dict(name, version, **extra))


def fold(reducer: Reducer, *outputs: Output) -> list[Step]:
    steps = [reducer.seed()]
    for output in outputs:
        steps.append(reducer(steps[-1], output))
    return steps[1:]


def shape(step: Step) -> list[tuple[str, str | None, bool]]:
    return [
        (e.type.value, e.name, e.final_state_unknown)
        for e in step.events
    ]


def test_relist_diffs_against_the_cache_and_swaps_in_one_step() -> None:
    """Case 12 and 15: unchanged objects cause nothing; vanished ones a DELETED."""
    reducer = Reducer()
    first, second = fold(
        reducer,
        Relisted([pod("a", 1), pod("b", 2), pod("c", 3)], "3"),
        Relisted([pod("a", 1), pod("b", 5), pod("d", 6)], "6"),
    )
    assert shape(second) == [
        ("MODIFIED", "b", False), ("ADDED", "d", False),
        ("DELETED", "c", True), ("SYNCED", None, False),
    ]
    assert second.snapshot.wire("default/a") is first.snapshot.wire("default/a")
    assert sorted(second.snapshot.keys()) == ["default/a", "default/b", "default/d"]
    assert second.snapshot.resource_version == "6"
    assert sorted(first.snapshot.keys()) == ["default/a", "default/b", "default/c"]
    assert second.events[-1].snapshot is second.snapshot


def test_identical_relist_emits_only_synced() -> None:
    reducer = Reducer()
    objects = [pod(f"p{i}", i) for i in range(50)]
    _, second = fold(reducer, Relisted(objects, "50"), Relisted(list(objects), "50"))
    assert shape(second) == [("SYNCED", None, False)]


def test_watch_events_with_an_already_seen_version_cause_nothing() -> None:
    reducer = Reducer()
    steps = fold(reducer, Relisted([pod("a", 1)], "1"), Applied(pod("a", 1)), Applied(pod("a", 2)))
    assert shape(steps[1]) == []
    assert shape(steps[2]) == [("MODIFIED", "a", False)]
    assert steps[2].events[0].old == pod_dict("a", 1)


def test_delete_of_an_unknown_object_is_silent_and_of_a_known_one_carries_old() -> None:
    reducer = Reducer()
    steps = fold(reducer, Relisted([pod("a", 1)], "1"), Removed(pod("x", 2)), Removed(pod("a", 3)))
    assert shape(steps[1]) == []
    assert shape(steps[2]) == [("DELETED", "a", False)]
    assert steps[2].events[0].old == pod_dict("a", 1)
    assert len(steps[2].snapshot) == 0


def test_bookmark_and_failure_change_no_content() -> None:
    reducer = Reducer()
    steps = fold(reducer, Relisted([pod("a", 1)], "1"), Progressed("9"),
                 Failure(StatusError("x", code=500)))
    assert not steps[1].changed and steps[1].snapshot.resource_version == "9"
    assert [e.type for e in steps[2].events] == [EventType.ERROR]
    assert not steps[2].changed


def test_transform_applies_before_caching() -> None:
    def drop_managed_fields(obj: dict) -> dict:  # type: ignore[type-arg]
        obj["metadata"].pop("managedFields", None)
        return obj

    reducer = Reducer(transform=drop_managed_fields)
    fat = pod_dict("a", 1)
    fat["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    (step,) = fold(reducer, Relisted([WireObject.from_dict(fat)], "1"))
    cached = step.snapshot.get("a", "default")
    assert cached is not None and "managedFields" not in cached["metadata"]


def test_indexes_follow_changes() -> None:
    def by_node(obj: dict) -> str | None:  # type: ignore[type-arg]
        return obj.get("spec", {}).get("nodeName")

    reducer = Reducer(indexers={"node": by_node})
    steps = fold(
        reducer,
        Relisted([pod("a", 1, spec={"nodeName": "n1"}), pod("b", 2, namespace="kube")], "2"),
        Applied(pod("a", 3, spec={"nodeName": "n2"})),
        Removed(pod("b", 4, namespace="kube")),
    )
    first, moved, removed = (s.snapshot for s in steps)
    assert [o["metadata"]["name"] for o in first.by_index("node", "n1")] == ["a"]
    assert moved.by_index("node", "n1") == [] and len(moved.by_index("node", "n2")) == 1
    assert first.index_values("node") == ["n1"]
    assert [o["metadata"]["name"] for o in first.list("kube")] == ["b"]
    assert removed.list("kube") == [] and "kube" not in removed.index_values("namespace")
    assert len(first.by_index("node", "n1")) == 1  # older snapshots are never changed
    with pytest.raises(KeyError, match="no index 'zone'"):
        first.by_index("zone", "a")


def test_resync_redelivers_the_cache_as_modified_with_old_is_object() -> None:
    reducer = Reducer()
    steps = fold(reducer, Resynced(), Relisted([pod("a", 1)], "1"), Resynced())
    assert steps[0].events == ()
    (event,) = steps[2].events
    assert event.type is EventType.MODIFIED and event.old is event.object


def test_replay_announces_the_cache_then_synced() -> None:
    reducer = Reducer()
    (step,) = fold(reducer, Relisted([pod("a", 1), pod("b", 2)], "2"))
    replayed = shape(step.replay())
    assert sorted(replayed[:2]) == [("ADDED", "a", False), ("ADDED", "b", False)]
    assert replayed[2:] == [("SYNCED", None, False)]
    assert shape(reducer.seed().replay()) == []
