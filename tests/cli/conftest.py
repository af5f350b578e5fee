"""Fixtures for the CLI, runner and report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.manifests import DATASET, EVALUATION, FINETUNE, write_manifests


@pytest.fixture
def manifests_dir(tmp_path: Path) -> Path:
    """A directory holding the three-kind chain docs -> tune -> compare."""
    write_manifests(tmp_path / "manifests", DATASET, FINETUNE, EVALUATION)
    return tmp_path / "manifests"
