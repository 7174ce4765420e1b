"""Shared fixtures. Every test process talks DDS only on localhost, in a domain of its own."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ["ROS_DOMAIN_ID"] = os.environ.get("DEPTH_NODE_TEST_DOMAIN", str(random.Random(os.getpid()).randint(1, 100)))
# Test publishers need the same large shared-memory segment as the node (the sender's segment carries the data).
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))


try:  # property-based tests: a bounded number of cases by default (CI), thousands with HYPOTHESIS_PROFILE=thorough
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    settings.register_profile("thorough", max_examples=5000, deadline=None,
                              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # test_fuzz.py says so when it is collected
    pass


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def conv_card(model_dir: Path) -> Path:
    from _models import conv_model

    return conv_model(model_dir)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not present (the project's shared data folder)")
    return SHARED
