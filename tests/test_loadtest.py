"""The load script (scripts/loadtest.py) against a real `streamlit run`: concurrent sessions all succeed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_concurrent_browserless_sessions_all_get_predictions():
    data = os.environ.get("BRAINCLF_DATA")
    if not data or not Path(data).is_dir():
        if os.environ.get("BRAINCLF_REQUIRE_REAL_DATA") == "1":
            pytest.fail("BRAINCLF_DATA is required")
        pytest.skip("needs a real image")
    image = sorted((Path(data) / "Testing" / "pituitary").iterdir())[0]
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "loadtest.py"), "--image", str(image),
                          "--sessions", "4", "--rounds", "2", "--timeout", "120", "--json"],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    res = json.loads(out.stdout)
    assert res["errors"] == [], res["errors"]
    assert res["ok"] == res["requests"] == 8
    assert set(res["latency_ms"]) == {"p50", "p90", "p95", "p99"}
