"""Benchmark options and fixtures (helpers live in ``bench/helpers.py``)."""

import jax
import pytest


def pytest_addoption(parser):
    parser.addoption("--big", action="store_true", help="add 1e8-element vectors (default on GPU)")


@pytest.fixture
def device():
    return str(jax.devices()[0].device_kind)
