"""A Ray cluster of separate processes on this machine, started the way users start one: ``ray start``.

Each node is a ``ray start --block`` in a process group of its own, so stopping (or killing) a node ends that node's
processes and nothing else on the machine: not another test's cluster, not a user's Ray. (Ray's workers run in
process groups of their own and end themselves within seconds of losing their raylet.)
Ray's token authentication is on, as it is by default: the cluster gets a token of its own in ``env`` (every command
run against it must be given that environment), so nothing is read from or written to the user's ~/.ray.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import free_port

BIN = Path(sys.executable).parent
STOP_GRACE_S = 5


def tool(name: str) -> str:
    """A console script of this environment (ray, serve, rag): subprocesses get the same installation."""
    return str(BIN / name)


@dataclass
class Node:
    process: subprocess.Popen
    metrics_port: int
    node_manager_port: int
    log: Path | None = None  # what its `ray start` printed

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


@dataclass
class RayCluster:
    env: dict[str, str]  # for the nodes and every command run against them; gets the cluster's token
    temp_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # socket paths stay short
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env = {**self.env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

    @property
    def headers(self) -> dict[str, str]:
        """For the dashboard's HTTP API."""
        return {"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start_head(self, num_cpus: int) -> Node:
        node = self._start(
            num_cpus,
            [
                "--head",
                "--port",
                str(self.gcs_port),
                "--include-dashboard",
                "true",
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(self.dashboard_port),
                "--ray-client-server-port",
                str(free_port()),
                "--temp-dir",
                self.temp_dir,
            ],
        )
        self._wait(
            lambda: httpx.get(f"{self.dashboard}/api/version", headers=self.headers, timeout=5).status_code == 200,
            "the dashboard",
        )
        return node

    def add_worker(self, num_cpus: int) -> Node:
        node = self._start(num_cpus, ["--address", self.address])
        expected = len(self.nodes)
        self._wait(lambda: self.alive_nodes() == expected, f"{expected} nodes")
        return node

    def alive_nodes(self) -> int:
        nodes = httpx.get(
            f"{self.dashboard}/nodes", params={"view": "summary"}, headers=self.headers, timeout=10
        ).json()["data"]["summary"]
        return sum(1 for n in nodes if n["raylet"]["state"] == "ALIVE")

    def kill(self, node: Node) -> None:
        """The node's raylet, GCS and agents at once (SIGKILL), as when its machine goes away; its workers follow."""
        os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.process.poll() is None:
                os.killpg(node.process.pid, signal.SIGTERM)
        for node in reversed(self.nodes):
            try:
                # A moment to exit cleanly, not more: `ray start --block` often outwaits any grace (seen: 30 s), and
                # nothing of a test's cluster outlives the test.
                node.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait()
            with contextlib.suppress(ProcessLookupError):  # what is left in the group once `ray start` has gone
                os.killpg(node.process.pid, signal.SIGKILL)

    def _start(self, num_cpus: int, args: list[str]) -> Node:
        node = Node(None, free_port(), free_port())  # type: ignore[arg-type]
        # Every port this node listens on is chosen here: two nodes (and other tests' Ray) share the machine.
        ports = [
            "--metrics-export-port",
            str(node.metrics_port),
            "--node-manager-port",
            str(node.node_manager_port),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--dashboard-agent-grpc-port",
            str(free_port()),
            "--runtime-env-agent-port",
            str(free_port()),
            "--object-manager-port",
            str(free_port()),
        ]
        node.log = Path(self.temp_dir) / f"ray-start-{len(self.nodes)}.log"
        with node.log.open("w") as log:
            node.process = subprocess.Popen(
                [tool("ray"), "start", "--block", "--num-cpus", str(num_cpus), "--disable-usage-stats", *ports, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.nodes.append(node)
        return node

    def _wait(self, ready, what: str) -> None:
        try:
            wait_until(ready, f"{what} in the cluster in {self.temp_dir}", 120, [n.process for n in self.nodes])
        except (RuntimeError, TimeoutError) as err:
            printed = "\n".join(n.log.read_text()[-1500:] for n in self.nodes if n.log)
            raise RuntimeError(f"{err}; `ray start` printed:\n{printed}") from None


def wait_until(ready, what: str, timeout_s: float, processes: list[subprocess.Popen] = ()) -> None:
    """Poll ``ready()`` until it is true; an HTTP error counts as not yet. Fails early when one of ``processes``
    ends."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ended = [p for p in processes if p.poll() is not None]
        if ended:
            raise RuntimeError(f"{ended[0].args[:2]} exited ({ended[0].returncode}) while waiting for {what}")
        try:
            if ready():
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(1)
    raise TimeoutError(f"no {what} after {timeout_s:.0f} s")


SERVICE_STOP_GRACE_S = 60


def stop_service(server: subprocess.Popen) -> None:
    """SIGTERM for ``rag serve``, which ends as Ctrl-C does (Serve's own shutdown, bounded at 30 s; SIGINT would be
    ignored where the test run itself was started in the background), then SIGKILL for what outlives a minute: these
    tests are not about shutdown, and their Ray goes with its driver or its cluster either way."""
    started = time.monotonic()
    server.terminate()
    try:
        server.wait(timeout=SERVICE_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        print(f"rag serve outlived SIGTERM by {SERVICE_STOP_GRACE_S} s and was killed")
    else:
        print(f"rag serve stopped {time.monotonic() - started:.0f} s after SIGTERM")
