"""CI runs the old server's integration script: zapmux and the Flask example, end to end."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test_flask_integration.sh"


@pytest.mark.timeout(180)
def test_the_flask_integration_script_passes() -> None:
    assert os.access(SCRIPT, os.X_OK), "the script must be executable"
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=170, check=False)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "integration test passed" in result.stdout
