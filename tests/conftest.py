"""Shared fixtures: the shared real-data folder and small synthetic corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep torch to one thread per test process: the suite runs on 2 cores, often beside other work.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data not available: {SHARED} is absent (see ../shared/data/README.md)")
    return SHARED


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """72 synthetic clips (12 per class, 6 speakers), written once per test session."""
    from esva.data.synthetic import SyntheticConfig, generate_corpus

    return generate_corpus(
        tmp_path_factory.mktemp("corpus"), SyntheticConfig(clips_per_class=12, n_speakers=6)
    )
