"""Resource references: URL building and up-front validation."""

from __future__ import annotations

import pytest

from rx_informer import InvalidResourceError, ResourceRef


@pytest.mark.parametrize(
    ("path", "api_version", "plural", "namespace"),
    [
        ("/api/v1/pods", "v1", "pods", None),
        ("/api/v1/namespaces/kube-system/configmaps", "v1", "configmaps", "kube-system"),
        ("/apis/apps/v1/namespaces/prod/deployments", "apps/v1", "deployments", "prod"),
        ("/apis/example.com/v1alpha1/widgets/", "example.com/v1alpha1", "widgets", None),
    ],
)
def test_paths_round_trip(path: str, api_version: str, plural: str, namespace: str | None) -> None:
    ref = ResourceRef.from_path(path)
    assert (ref.api_version, ref.plural, ref.namespace) == (api_version, plural, namespace)
    assert ref.path == path.rstrip("/")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("v2", "pods"), "core group only has 'v1'"),
        (("apps/v1", "Deployments"), "resource 'Deployments' is not valid"),
        (("v1", "pods", "Bad_NS"), "namespace 'Bad_NS' is not valid"),
        (("a/b/c", "pods"), "must be 'v1' or '<group>/<version>'"),
        (("Apps/v1", "deployments"), "API group 'Apps'"),
        (("/v1", "pods"), "API group ''"),
        (("apps", "deployments"), "a group needs its version too, e.g. 'apps/v1'"),
    ],
)
def test_invalid_names_are_rejected_with_the_offending_value(
    args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(InvalidResourceError, match=message):
        ResourceRef(*args)


def test_query_carries_selectors_and_drops_unset_params() -> None:
    ref = ResourceRef("v1", "pods", label_selector="app in (a,b)", field_selector="x=y")
    assert ref.query(limit=5, **{"continue": None}) == (
        "labelSelector=app+in+%28a%2Cb%29&fieldSelector=x%3Dy&limit=5"
    )
    assert ref.describe() == "pods (app in (a,b),x=y)"
    assert ResourceRef("apps/v1", "deployments", "prod").describe() == "deployments.apps in prod"


def test_selectors_must_be_strings() -> None:
    with pytest.raises(InvalidResourceError, match="label selector 5 is not a selector"):
        ResourceRef("v1", "pods", label_selector=5)  # type: ignore[arg-type]
