"""Make the control-plane fixtures available when the package is not installed.

An installed rx-informer registers ``rx_informer.testing.pytest_plugin`` through its pytest11
entry point; a source checkout run with ``python -m pytest`` does not, so register it here.
"""

from __future__ import annotations

import pytest

from rx_informer.testing import pytest_plugin


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.is_registered(pytest_plugin):
        config.pluginmanager.register(pytest_plugin, "rx_informer")
