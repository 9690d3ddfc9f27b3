"""Benchmark options and fixtures (helpers live in ``bench/helpers.py``)."""

import jax
import pytest


def pytest_addoption(parser):
    parser.addoption("--big", action="store_true", help="add 1e8-element vectors (default on GPU)")
    parser.addoption(
        "--budget",
        type=float,
        default=150.0,
        help="seconds a benchmark group with a budget may take; kernels whose compile would "
        "overrun it are skipped, and recorded in extra_info['skipped'] (default 150)",
    )


_BUDGETS: dict = {}  # benchmark group -> its helpers.Budget, from the group's first test


@pytest.fixture
def budget(request):
    """The ``helpers.Budget`` of this benchmark's group: ``--budget`` s from its first test.

    A test of a group whose budget is spent is skipped, saying so; a test's
    ``budget.skipped`` starts empty.
    """
    from .helpers import Budget

    marker = request.node.get_closest_marker("benchmark")
    group = marker.kwargs.get("group", request.node.name) if marker else request.node.name
    spent = _BUDGETS.setdefault(group, Budget(request.config.getoption("--budget")))
    if spent.left() <= 0:
        pytest.skip(f"benchmark group {group!r} spent its {spent.seconds:.0f} s budget")
    spent.skipped = {}
    return spent


@pytest.fixture
def device():
    return str(jax.devices()[0].device_kind)
