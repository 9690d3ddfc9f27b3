"""The examples in the docstrings run and print what they say."""

import doctest

import pytest

from jax_rmsprop import _transform, checkpoint


@pytest.mark.parametrize("module", [_transform, checkpoint], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
