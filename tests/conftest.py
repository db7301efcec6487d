import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def aloha_data():
    """The shared real data folder; tests needing it skip with a reason when ALOHA_DATA is unset."""
    root = os.environ.get("ALOHA_DATA")
    if not root or not os.path.isdir(root):
        pytest.skip("ALOHA_DATA is not set (real data: shared/data); .ci/run sets it")
    return root
