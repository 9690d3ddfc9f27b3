import jax
import pytest


def pytest_addoption(parser):
    parser.addoption("--big", action="store_true", help="add 1e8-element vectors (default on GPU)")


def big_enabled(config):
    return config.getoption("--big") or jax.default_backend() != "cpu"


@pytest.fixture
def device():
    return str(jax.devices()[0].device_kind)


def donated_loop(step, state, *extra):
    """A callable that runs ``state = step(*state, *extra)`` and blocks; state is donated.

    The latest state is ``run.state``.
    """

    def run():
        run.state = step(*run.state, *extra)
        jax.block_until_ready(run.state)

    run.state = state
    run()  # compile and warm up outside the timer
    run()
    return run


def per_second(benchmark, work):
    """``work`` / median seconds, or None under --benchmark-disable (no timings)."""
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else work / stats.stats.median
