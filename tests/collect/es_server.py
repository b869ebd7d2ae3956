"""Elasticsearch for the tests: ``noida-db`` (a local server speaking the Elasticsearch HTTP API)
started as a separate process on a free loopback port, or a real cluster named by
``KUBEFORENSICS_TEST_ES_URL``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import urllib3

#: A real Elasticsearch cluster to test against instead of a local noida-db.
REMOTE = os.environ.get("KUBEFORENSICS_TEST_ES_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NoidaServer:
    """One ``noida-db start --only elasticsearch`` process (its own process group, stopped by its id)."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> NoidaServer:
        exe = shutil.which("noida-db") or str(Path(os.sys.executable).with_name("noida-db"))
        if not Path(exe).exists():
            import pytest

            pytest.skip("noida-db is not installed (pip install noida-db)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.data_dir.parent / f"noida-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [exe, "start", "--only", "elasticsearch", "--data-dir", str(self.data_dir),
             "--elasticsearch-port", str(self.port), "--host", "127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        http = urllib3.PoolManager()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"noida-db exited with {self.proc.returncode}")
            try:
                if http.request("GET", self.url + "/", timeout=1.0, retries=False).status == 200:
                    return self
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"noida-db did not answer on {self.url} within {timeout}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the wrapper and the server it started, by group id
            self.proc.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        pgid = self.proc.pid
        self.proc = None
        self.log.close()
        # The wrapper exiting does not mean its server child stopped listening: wait until the port
        # refuses connections, so that "the server went away" is true when stop() returns.
        deadline, killed = time.monotonic() + 10, False
        while self._listening():
            if time.monotonic() > deadline:
                if killed:
                    raise RuntimeError(f"port {self.port} still accepts connections after the server was killed")
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                deadline, killed = time.monotonic() + 5, True
            time.sleep(0.05)

    def _listening(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0
