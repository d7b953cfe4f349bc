"""The virtual cluster of demo/cluster.sh, for real: network namespaces head/node1/node2, munged,
slurmctld and two slurmd (Slurm from Debian), the library built for the collector on head and
the collector deployed with ansible-playbook. A job submitted with `sbatch` runs `srun -N2 -n4`
of a program under the library; its four tasks reach the collector over the namespaces' network.
After `down`, no process the cluster started and no namespace of it is left.

One cluster for the module (brought up once, torn down at the end even on failure), in a state
dir of its own and with namespace names of its own, so that it never meets a `make cluster`."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "demo" / "cluster.sh"
HOSTS = ("head", "node1", "node2")
NODE_ADDR = {"node1": "10.77.0.11", "node2": "10.77.0.12"}
DAEMONS = ("munged", "slurmctld", "slurmd-node1", "slurmd-node2", "collector")


def _unavailable() -> str | None:
    """Why the cluster cannot exist here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, munged, Slurm daemons)"
    missing = [p for p in ("slurmctld", "slurmd", "sbatch", "sinfo", "munged", "mungekey", "ip")
               if shutil.which(p) is None]
    if missing:
        return (f"missing {', '.join(missing)}: install the Debian packages slurmctld slurmd "
                f"slurm-client munge iproute2 (make apt-deps)")
    probe = subprocess.run(["unshare", "--net", "--uts", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"network/UTS namespaces unavailable: {probe.stderr.strip()}"
    if not (REPO / ".venv" / "bin" / "ansible-playbook").exists():
        return "no .venv with ansible-playbook: run 'make venv'"
    return None


pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=_unavailable() or "")


@dataclass
class Cluster:
    state: Path
    env: dict[str, str]
    paths: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CLUSTER), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def ok(self, *args: str, timeout: float = 120) -> str:
        proc = self.run(*args, timeout=timeout)
        assert proc.returncode == 0, (
            f"cluster.sh {' '.join(args)} exited {proc.returncode}:\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc.stdout

    def namespaces(self) -> list[str]:
        prefix = self.env["OGRT_CLUSTER_NS"] + "-"
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             check=True).stdout
        return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]

    def processes(self) -> dict[int, str]:
        """Every process in the cluster's namespaces (pid -> its /proc start time), daemons
        from their pid files included."""
        found: dict[int, str] = {}
        pids: set[int] = set()
        for ns in self.namespaces():
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            pids.update(int(p) for p in out.stdout.split())
        for name in DAEMONS:
            pid_file = self.state / "run" / f"{name}.pid"
            if pid_file.exists():
                pids.add(int(pid_file.read_text()))
        for pid in pids:
            if (start := _start_time(pid)) is not None:
                found[pid] = start
        return found


def _start_time(pid: int) -> str | None:
    """The start time of a process (field 22 of /proc/PID/stat): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # Not pytest's tmp_path: its 0700 parents would keep the job user out of the state dir.
    state_parent = Path(tempfile.mkdtemp(prefix="ogrt-cluster-test-"))
    state_parent.chmod(0o755)
    state = state_parent / "state"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OGRT_", "SLURM_")) and k != "LD_PRELOAD"}
    env.update({"OGRT_CLUSTER_DIR": str(state), "OGRT_CLUSTER_NS": f"ogrt-t{os.getpid()}"})
    c = Cluster(state, env, {})
    try:
        c.ok("up", timeout=300)
        c.paths = dict(line.split("=", 1) for line in c.ok("paths").splitlines())
        yield c
    finally:
        down = c.run("down", timeout=180)
        shutil.rmtree(state_parent, ignore_errors=True)
        assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]


def test_up_is_idempotent_and_status_shows_everything(cluster: Cluster) -> None:
    pids = {n: (cluster.state / "run" / f"{n}.pid").read_text() for n in DAEMONS}
    again = cluster.ok("up", timeout=300)
    assert "is up already: nothing to do" in again
    assert {n: (cluster.state / "run" / f"{n}.pid").read_text() for n in DAEMONS} == pids
    status = cluster.ok("status")
    for name in DAEMONS:
        assert f"{name} " in status and "not running" not in status, status
    assert sorted(cluster.namespaces()) == sorted(
        f"{cluster.env['OGRT_CLUSTER_NS']}-{h}" for h in (*HOSTS, "net"))


def test_non_root_gets_a_clear_error(cluster: Cluster) -> None:
    user = cluster.paths["job_user"]
    for sub in ("up", "down", "status"):
        proc = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                               str(CLUSTER), sub], env=cluster.env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 1 and "must run as root" in proc.stderr, proc
    assert cluster.ok("status")  # still up


def test_exec_runs_on_the_host_with_its_name_and_address(cluster: Cluster) -> None:
    out = cluster.ok("exec", "node2", "--user", cluster.paths["job_user"], "--",
                     "sh", "-c", "hostname; id -un; ip -4 -o addr show dev eth0")
    name, user, addr = out.splitlines()
    assert (name, user) == ("node2", cluster.paths["job_user"])
    assert " 10.77.0.12/24 " in addr


def test_srun_tasks_are_recorded_with_rank_host_and_job(cluster: Cluster) -> None:
    work = Path(cluster.paths["work"])
    user = cluster.paths["job_user"]
    program = work / "task"
    subprocess.run(["gcc", "-O2", "-o", str(program), str(REPO / "demo" / "hello.c")], check=True)
    script = work / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --nodes=2 --ntasks=4\n"
        f"export LD_PRELOAD={cluster.paths['library']} OGRT_ACTIVE=1\n"
        f"srun -N2 -n4 {program}\n")
    script.chmod(0o755)
    shutil.chown(script, user)
    proc = cluster.run("exec", "head", "--user", user, "--", "sbatch", "--parsable", "--wait",
                       f"--chdir={work}", f"--output={work}/job-%j.out", str(script))
    outputs = "\n".join(p.read_text() for p in work.glob("job-*.out"))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{outputs}"
    job = proc.stdout.strip().split(";")[0]
    assert job.isdigit(), proc.stdout
    assert outputs.count("hello from a stamped program") == 4, outputs

    # SIGTERM makes the collector flush every record it accepted; then read its database.
    cluster.ok("collector", "stop")
    try:
        with sqlite3.connect(f"file:{cluster.paths['database']}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT p.host, p.peer, p.rank, p.job_id, p.username, p.exit_status"
                " FROM processes p JOIN executables e ON e.id = p.executable_id"
                " WHERE e.path = ? ORDER BY p.rank", (str(program),)).fetchall()
    finally:
        cluster.ok("collector", "start")
    assert [r[2] for r in rows] == [0, 1, 2, 3], rows
    assert {r[3] for r in rows} == {job}
    assert {r[4] for r in rows} == {user}
    assert {r[5] for r in rows} == {0}
    assert sorted(r[0] for r in rows) == ["node1", "node1", "node2", "node2"]
    for host, peer, *_ in rows:  # each record came over the namespaces' network from its node
        assert peer.split(":")[0] == NODE_ADDR[host], rows

    report = cluster.ok("report", "job", job)
    assert f"Job {job}:" in report and "node1" in report and "node2" in report


def test_down_leaves_no_process_and_no_namespace(cluster: Cluster) -> None:
    # A process on node1 that no pid file knows (like a job step still running at `down`).
    stray = subprocess.Popen([str(CLUSTER), "exec", "node1", "--", "sleep", "600"],
                             env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if stray.pid in cluster.processes():
                break
            time.sleep(0.1)
        before = cluster.processes()
        assert stray.pid in before and len(before) >= len(DAEMONS) + 1, before
        out = cluster.ok("down", timeout=180)
        assert stray.wait(timeout=10) != 0  # killed by down, not ended on its own
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
    swept = [line for line in out.splitlines()
             if f"left in {cluster.env['OGRT_CLUSTER_NS']}-node1:" in line]
    assert swept and str(stray.pid) in swept[0].split(":")[1].split(), out
    assert cluster.namespaces() == []
    assert not cluster.state.exists()
    left = {pid: start for pid, start in before.items() if _start_time(pid) == start}
    assert left == {}, f"processes of the cluster still run: {left}"
    again = cluster.run("down")
    assert again.returncode == 0 and "nothing to stop" in again.stdout
