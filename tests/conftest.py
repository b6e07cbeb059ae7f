import os
import sys

import numpy as np
import pytest
from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))
settings.register_profile("lipcert", max_examples=40, deadline=None)
settings.load_profile("lipcert")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
