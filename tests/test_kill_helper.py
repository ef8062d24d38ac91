"""The kill tests' helper (miniatures.kill_beside_reference): a failure before the reference is
collected must not leave the reference process running."""

from __future__ import annotations

import os
import sys

import pytest

from miniatures import kill_beside_reference


def test_a_run_that_ends_before_its_checkpoint_fails_and_stops_the_reference(tmp_path):
    pid_file = tmp_path / "reference.pid"
    reference = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)",
    ]
    # ends by itself, once the reference is surely running
    killed = [sys.executable, "-c", f"import os, time\nwhile not os.path.exists({str(pid_file)!r}): time.sleep(0.05)"]
    with pytest.raises(AssertionError, match="ended by itself"):
        kill_beside_reference(reference, killed, tmp_path / "run", dict(os.environ), timeout=60)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # stopped and reaped: no such process any more
        os.kill(pid, 0)
