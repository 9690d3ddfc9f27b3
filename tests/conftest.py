import jax
import pytest
from hypothesis import settings

# Float64 is needed for exact comparisons; float32 tests ask for float32 explicitly.
jax.config.update("jax_enable_x64", True)

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile("ci")


def pytest_addoption(parser):
    parser.addoption(
        "--thorough", action="store_true", help="run property tests with the large profile"
    )


def pytest_configure(config):
    if config.getoption("--thorough"):
        settings.load_profile("thorough")


@pytest.fixture(autouse=True)
def _strict_numpy():
    """No implicit rank or dtype promotion inside the tests (the library's own code must be
    explicit); scoped to ``tests/`` so that ``pytest tests bench`` leaves the bench alone."""
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        yield


@pytest.fixture(params=[jax.jit, lambda f: f], ids=["jit", "nojit"])
def maybe_jit(request):
    return request.param
