"""A test run stopped with SIGTERM still tears its session fixtures down (tests/sigterm.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from servers.launch import wait_for

TESTS = Path(__file__).parent

RUN = """
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def server():
    yield
    (HERE / "down").touch()


def test_waits_for_the_signal(server):
    (HERE / "up").touch()  # set up: the signal may come from now on
    time.sleep(300)
"""


def test_sigterm_stops_the_run_and_tears_the_session_fixtures_down(tmp_path: Path) -> None:
    (tmp_path / "test_run.py").write_text(RUN)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # The suite's own conftest, loaded as a plugin: what every run of the suite installs.
    paths = [str(TESTS), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: (tmp_path / "up").exists() or proc.poll() is not None, 120, 0.1, "setup")
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()

    assert (tmp_path / "down").exists(), out  # the fixture's teardown ran
    assert proc.returncode == 2 and "KeyboardInterrupt" in out, out  # pytest's "interrupted"
