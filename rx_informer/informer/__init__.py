"""The public informer and the factory that shares informers per resource."""

from rx_informer.informer.factory import InformerFactory
from rx_informer.informer.informer import Informer

__all__ = ["Informer", "InformerFactory"]
