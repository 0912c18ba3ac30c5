"""Fixtures of the mixture tests."""

from __future__ import annotations

import pytest
from _mixture_data import t_mixture


@pytest.fixture(scope="module")
def small_t():
    return t_mixture(600, 4, 3, nu=5.0, separation=3.0, seed=0)
