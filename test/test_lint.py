"""ruff (lint and format) over the whole repository is part of the test suite."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("ruff_args", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_clean(ruff_args):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *ruff_args, "--no-cache", str(REPO_ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
