"Shared test setup."
import pytest
import torch


@pytest.fixture(autouse=True)
def seeded_torch():
    "Every test starts from the same global random state, so tolerances are checked on the same numbers in every run."
    torch.manual_seed(0)
    yield
