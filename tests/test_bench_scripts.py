"""The benchmark scripts still drive the library as it is: their figures are only measured by
hand (machines are noisy), but a script broken by an API change would go unnoticed until then,
and the comparison with Django (outside this repository) runs ``bench/transitions.py``'s own
walk. Each runs here on a handful of dossiers, as a real subprocess, and must end with its JSON
line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.parametrize(
    "args",
    [
        ("bench/transitions.py", "--n", "20", "--engine-only"),
        ("bench/sweep.py", "--timers", "500", "--rounds", "1", "--no-postgres"),
    ],
    ids=["transitions", "sweep"],
)
def test_a_benchmark_script_runs_on_a_few_dossiers_and_ends_with_its_figures(
    args: tuple[str, ...],
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCOP_")}
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(figures, dict) and figures
