"""`python -m benchmarks.run` as a command: its --help, and a run stopped with SIGTERM.

The benchmark runs in a subprocess with TMPDIR pointing into the test's tmp_path, so its work
directory is where the test can see whether it was removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[2]
RUN = [sys.executable, "-m", "benchmarks.run"]


def environment(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp_path), "BENCH_QUICK": "1"}


def benchmark_server_of(parent: int) -> int | None:
    """The pid of a `benchmarks.servers` process started by `parent`, if one runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended while being read
            continue
        # The parent pid is the second field after the command name, which ends at the last ")".
        if int(stat.rpartition(")")[2].split()[1]) == parent and b"benchmarks.servers" in command:
            return int(entry.name)
    return None


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_help_describes_the_run_and_exits_without_running_it(tmp_path: Path) -> None:
    done = subprocess.run([*RUN, "--help"], cwd=ROOT, env=environment(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "benchmarks/results/latest.json" in done.stdout and "BENCH_QUICK=1" in done.stdout
    assert "ingest ..." not in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_argument_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([*RUN, "--quick"], cwd=ROOT, env=environment(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "unrecognized arguments: --quick" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_sigterm_stops_the_benchmark_servers_and_removes_the_work_directory(tmp_path: Path) -> None:
    run = subprocess.Popen(RUN, cwd=ROOT, env=environment(tmp_path), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    child = None
    try:
        deadline = time.monotonic() + 60
        while (child := benchmark_server_of(run.pid)) is None and time.monotonic() < deadline:
            assert run.poll() is None, "the benchmark run ended before starting a server"
            time.sleep(0.05)
        assert child is not None, "no benchmarks.servers process within 60 s"
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)
        assert not running(child)
        assert list(tmp_path.iterdir()) == []
    finally:
        run.kill()
        run.wait()
        if child is not None and running(child):  # orphaned: do not leave it to the rest of the suite
            os.kill(child, signal.SIGKILL)
