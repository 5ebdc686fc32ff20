"""What to list and watch: a resource, its scope and its selectors, validated up front.

A wrong name would otherwise surface as a 404 in a retry loop that never ends, so everything
that the API server could never accept is rejected here, before any request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from rx_informer.errors import InvalidResourceError

# RFC 1123 label: what the API server requires of namespaces and of resource plurals.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# A group is a DNS subdomain; a version is a DNS label (v1, v1beta2, ...).
_GROUP = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL_MAX = 63
_GROUP_MAX = 253


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """One list/watch target. Equal refs share one informer in a factory.

    ``api_version`` is ``"v1"`` for the core group or ``"group/version"``; ``plural`` is the
    resource's plural name as in its URL (``pods``, ``deployments``).
    """

    api_version: str
    plural: str
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None

    def __post_init__(self) -> None:
        _check_api_version(self.api_version)
        _check_label("resource", self.plural)
        if self.namespace is not None:
            _check_label("namespace", self.namespace)
        for name, selector in (("label", self.label_selector), ("field", self.field_selector)):
            if selector is not None and (not isinstance(selector, str) or "\n" in selector):
                raise InvalidResourceError(f"{name} selector {selector!r} is not a selector")

    @classmethod
    def from_path(
        cls,
        path: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ResourceRef:
        """Parse ``/api/v1/pods``, ``/apis/apps/v1/namespaces/prod/deployments`` and kin."""
        parts = path.strip("/").split("/")
        if parts[:1] == ["api"]:
            prefix, rest = parts[1:2], parts[2:]
        elif parts[:1] == ["apis"]:
            prefix, rest = ["/".join(parts[1:3])], parts[3:]
        else:
            raise InvalidResourceError(
                f"path {path!r} must start with /api/<version>/ or /apis/<group>/<version>/"
            )

        if len(rest) == 3 and rest[0] == "namespaces":
            namespace: str | None = rest[1]
            rest = rest[2:]
        else:
            namespace = None
        if len(rest) != 1 or not prefix or not prefix[0]:
            raise InvalidResourceError(
                f"path {path!r} is not a collection: expected "
                "/api/v1/[namespaces/<ns>/]<plural> or /apis/<group>/<version>/[...]<plural>"
            )
        return cls(prefix[0], rest[0], namespace, label_selector, field_selector)

    @property
    def path(self) -> str:
        """The collection's URL path."""
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespace is not None:
            base = f"{base}/namespaces/{self.namespace}"
        return f"{base}/{self.plural}"

    def describe(self) -> str:
        """A short human name for logs and errors: ``pods in prod (app=web)``."""
        where = f" in {self.namespace}" if self.namespace else ""
        selectors = ",".join(s for s in (self.label_selector, self.field_selector) if s)
        group = "" if "/" not in self.api_version else "." + self.api_version.split("/")[0]
        return f"{self.plural}{group}{where}" + (f" ({selectors})" if selectors else "")

    def query(self, **params: str | int | None) -> str:
        """The query string for a list or watch: the selectors plus ``params``.

        List and watch must carry the same selectors, so both are built here.
        """
        pairs: list[tuple[str, str]] = []
        if self.label_selector:
            pairs.append(("labelSelector", self.label_selector))
        if self.field_selector:
            pairs.append(("fieldSelector", self.field_selector))
        pairs.extend((k, str(v)) for k, v in params.items() if v is not None)
        return urlencode(pairs)


def _check_api_version(api_version: str) -> None:
    if not isinstance(api_version, str) or api_version.count("/") > 1:
        raise InvalidResourceError(
            f"api_version {api_version!r} must be 'v1' or '<group>/<version>'"
        )
    group, slash, version = api_version.rpartition("/")
    if slash and (len(group) > _GROUP_MAX or not _GROUP.fullmatch(group)):
        raise InvalidResourceError(f"API group {group!r} in {api_version!r} is not a DNS name")
    if not slash and version != "v1":
        looks_like_group = not re.fullmatch(r"v[0-9]+((alpha|beta)[0-9]+)?", version)
        hint = (
            f"a group needs its version too, e.g. '{version}/v1'" if looks_like_group
            else "the core group only has 'v1'; other groups are written "
            "'<group>/<version>', e.g. 'apps/v1'"
        )
        raise InvalidResourceError(f"api_version {api_version!r}: {hint}")
    _check_label("version", version)


def _check_label(what: str, value: str) -> None:
    if (
        not isinstance(value, str)
        or len(value) > _DNS_LABEL_MAX
        or not _DNS_LABEL.fullmatch(value)
    ):
        raise InvalidResourceError(
            f"{what} {value!r} is not valid: it must be lowercase letters, digits and '-', "
            f"at most {_DNS_LABEL_MAX} characters"
        )
