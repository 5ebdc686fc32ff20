"""Connection layer: where the cluster is, how to authenticate, what resource to address."""

from rx_informer.connection.cluster import Cluster
from rx_informer.connection.resource import ResourceRef

__all__ = ["Cluster", "ResourceRef"]
