import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ROOT = os.path.dirname(HERE)
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared"))
EXAMPLES = os.path.join(ROOT, "models")


@pytest.fixture
def shared_dir():
    if not os.path.isdir(os.path.join(SHARED, "models")):
        pytest.skip("../shared is not present")
    return SHARED
