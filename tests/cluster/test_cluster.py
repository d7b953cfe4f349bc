"""The virtual cluster of demo/cluster.sh, for real: network namespaces head/node1/node2, munged,
slurmctld and two slurmd (Slurm from Debian), the library built for the collector on head and
the collector deployed with ansible-playbook, Slurm's hooks from roles/ogrt_slurm. A job
submitted with `sbatch` runs `srun -N2 -n4` of a program, under the library without any
`module load` (the TaskProlog); its four tasks reach the collector over the namespaces' network,
and the job's own record (PrologSlurmctld, EpilogSlurmctld, jobcomp/script) says how it ended.
Failing and cancelled jobs, a stopped collector (jobs run exactly as without OGRT, nodes stay
idle), and a host outside the collector's allowed_networks. After `down`, no process the
cluster started and no namespace of it is left.

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

    def sbatch(self, script: str, *args: str, name: str = "job") -> tuple[str, int]:
        """Submit `script` (its text) as the job user with `sbatch --wait`; (job id, exit code)."""
        work = Path(self.paths["work"])
        path = work / f"{name}.sh"
        path.write_text("#!/bin/bash\n" + script)
        path.chmod(0o755)
        shutil.chown(path, self.paths["job_user"])
        proc = self.run("exec", "head", "--user", self.paths["job_user"], "--", "sbatch", "--parsable",
                        "--wait", f"--chdir={work}", f"--output={work}/{name}-%j.out", *args, str(path))
        job = proc.stdout.strip().split(";")[0]
        assert job.isdigit(), proc
        return job, proc.returncode

    def output(self, name: str, job: str) -> str:
        return (Path(self.paths["work"]) / f"{name}-{job}.out").read_text()

    def query(self, sql: str, params: tuple = (), until=lambda rows: bool(rows), timeout: float = 60) -> list:
        """Rows of the collector's database, read again until `until(rows)` (records arrive
        after the job ends: the hooks send them, the collector writes them in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            with sqlite3.connect(f"file:{self.paths['database']}?mode=ro", uri=True, timeout=10) as db:
                rows = db.execute(sql, params).fetchall()
            db.close()
            if until(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.3)

    def job_row(self, job: str, until=lambda r: r[0][2] is not None) -> tuple:
        """(job_id, num_nodes, state, exit_code, username, nodelist) once the job's final state is there."""
        rows = self.query("SELECT job_id, num_nodes, state, exit_code, username, nodelist FROM jobs"
                          " WHERE job_id = ?", (job,), until=lambda rows: bool(rows) and until(rows))
        assert rows, f"no job record of job {job}; hook log:\n{self.hook_log()}"
        return rows[0]

    def hook_log(self) -> str:
        path = Path(self.paths["hook_log"])
        return path.read_text() if path.exists() else ""

    def metric(self, name: str) -> float:
        """A sample of the collector's /metrics, fetched on head."""
        python = Path(self.paths["root"]) / "opt" / "ogrt" / "venv" / "bin" / "python"
        text = self.ok("exec", "head", "--", str(python), "-c",
                       "import urllib.request,sys;sys.stdout.write(urllib.request.urlopen("
                       f"'http://{self.paths['metrics']}/metrics',timeout=10).read().decode())")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

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
    script.write_text(  # no LD_PRELOAD, no module load: the TaskProlog of roles/ogrt_slurm
        "#!/bin/bash\n"
        "#SBATCH --nodes=2 --ntasks=4\n"
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

    rows = cluster.query(
        "SELECT p.host, p.peer, p.rank, p.job_id, p.username, p.exit_status, p.step_id"
        " FROM processes p JOIN executables e ON e.id = p.executable_id"
        " WHERE e.path = ? ORDER BY p.rank", (str(program),),
        until=lambda rows: len(rows) == 4 and all(r[5] is not None for r in rows))
    assert [r[2] for r in rows] == [0, 1, 2, 3], rows
    assert {r[3] for r in rows} == {job}
    assert {r[4] for r in rows} == {user}
    assert {r[5] for r in rows} == {0}
    assert sorted(r[0] for r in rows) == ["node1", "node1", "node2", "node2"]
    assert {r[6] for r in rows} == {"0"}  # the job's first step
    for host, peer, *_ in rows:  # each record came over the namespaces' network from its node
        assert peer.split(":")[0] == NODE_ADDR[host], rows

    assert cluster.job_row(job) == (job, 2, "COMPLETED", 0, user, "node[1-2]")
    report = cluster.ok("report", "job", job)
    assert f"Job {job}:" in report and "node1" in report and "node2" in report
    assert "state COMPLETED" in report and "node count 2" in report
    jobs = cluster.ok("report", "jobs", "--job", job)
    assert "COMPLETED" in jobs and "node[1-2]" in jobs


def test_failed_and_cancelled_jobs(cluster: Cluster) -> None:
    job, code = cluster.sbatch("srun -N1 -n1 true\nexit 3\n", name="fails")
    assert code == 3
    assert cluster.job_row(job)[1:4] == (1, "FAILED", 3)

    # a job that runs until it is cancelled: its processes' records are there
    work = Path(cluster.paths["work"])
    script = work / "long.sh"
    script.write_text("#!/bin/bash\nsrun -N1 -n1 sleep 300\n")
    script.chmod(0o755)
    shutil.chown(script, cluster.paths["job_user"])
    out = cluster.ok("exec", "head", "--user", cluster.paths["job_user"], "--", "sbatch", "--parsable",
                     f"--chdir={work}", f"--output={work}/long-%j.out", str(script))
    long_job = out.strip().split(";")[0]
    sleeps = cluster.query("SELECT p.host FROM processes p JOIN executables e ON e.id = p.executable_id"
                           " WHERE p.job_id = ? AND e.path LIKE '%/sleep'", (long_job,))
    assert sleeps, "the job's sleep was not recorded while it ran"
    cluster.ok("exec", "head", "--", "scancel", long_job)
    assert cluster.job_row(long_job)[2] == "CANCELLED"
    procs = cluster.query("SELECT count(*) FROM processes WHERE job_id = ?", (long_job,))
    assert procs[0][0] >= 2  # the batch shell and sleep at least
    assert "CANCELLED" in cluster.ok("report", "job", long_job).splitlines()[0]


def test_tasks_get_the_library_without_module_load_unless_they_opt_out(cluster: Cluster) -> None:
    lib = cluster.paths["library"]
    other = "/lib/x86_64-linux-gnu/libm.so.6"
    show = '#SBATCH -N2 -n2\nset -o pipefail\nsrun -N2 -n2 sh -c \'echo "$(hostname) [$LD_PRELOAD] [${OGRT_ACTIVE-unset}]"\' | sort\n'
    job, code = cluster.sbatch(show, name="env")
    assert code == 0
    assert cluster.output("env", job).splitlines() == [f"node1 [{lib}] [1]", f"node2 [{lib}] [1]"]
    # a preload of the job's own is kept, after the library
    job, code = cluster.sbatch(show, f"--export=ALL,LD_PRELOAD={other}", name="env-other")
    assert code == 0
    assert cluster.output("env-other", job).splitlines() == [
        f"node1 [{lib}:{other}] [1]", f"node2 [{lib}:{other}] [1]"]
    # OGRT_ACTIVE=0 in the job's environment: the site allows opting out; nothing is changed
    job, code = cluster.sbatch(show, f"--export=ALL,OGRT_ACTIVE=0,LD_PRELOAD={other}", name="env-out")
    assert code == 0
    assert cluster.output("env-out", job).splitlines() == [f"node1 [{other}] [0]", f"node2 [{other}] [0]"]


def test_collector_down_changes_nothing_for_jobs(cluster: Cluster) -> None:
    script = ("#SBATCH -N2 -n2\nset -o pipefail\n"
              "srun -N2 -n2 sh -c 'hostname; ls /etc/hostname; exit 0' | sort > result-$SLURM_JOB_NAME.txt\n"
              "echo done; cat result-$SLURM_JOB_NAME.txt\nexit 5\n")
    work = Path(cluster.paths["work"])
    cluster.ok("collector", "stop")
    try:
        tracked, code = cluster.sbatch(script, name="down")
        assert code == 5
        plain, plain_code = cluster.sbatch(script, "--export=ALL,OGRT_ACTIVE=0", name="plain")
        assert plain_code == 5
        assert cluster.output("down", tracked) == cluster.output("plain", plain)
        assert (work / "result-down.sh.txt").read_text() == (work / "result-plain.sh.txt").read_text()
        assert (work / "result-down.sh.txt").read_text() == "/etc/hostname\n/etc/hostname\nnode1\nnode2\n"
        sinfo = cluster.ok("exec", "head", "--", "sinfo", "-h", "-N", "-o", "%N %t")
        assert sorted(sinfo.split("\n")[:2]) == ["node1 idle", "node2 idle"], sinfo
        log = cluster.hook_log()
        assert f"job {tracked} not sent: no collector reachable" in log, log
    finally:
        cluster.ok("collector", "start")
    job, code = cluster.sbatch("srun -N1 -n1 true\n", name="after")
    assert code == 0
    assert cluster.job_row(job)[2] == "COMPLETED"
    assert cluster.query("SELECT count(*) FROM processes WHERE job_id = ?", (job,),
                         until=lambda rows: rows[0][0] >= 2)[0][0] >= 2


def test_a_host_outside_allowed_networks_is_rejected(cluster: Cluster) -> None:
    """A host on the cluster's bridge but outside the collector's allowed_networks
    (10.77.0.0/28): its processes' records and its job records are counted and dropped."""
    ns = f"{cluster.env['OGRT_CLUSTER_NS']}-stranger"
    bridge_ns = cluster.paths["bridge_netns"]
    before = cluster.metric('ogrt_rejected_total{reason="not_allowed"}')
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip = ["ip", "-n", ns]
        subprocess.run(["ip", "-n", bridge_ns, "link", "add", "v-stranger", "type", "veth", "peer", "name",
                        "eth0", "netns", ns], check=True)
        subprocess.run(["ip", "-n", bridge_ns, "link", "set", "v-stranger", "master", cluster.paths["bridge"],
                        "up"], check=True)
        subprocess.run([*ip, "addr", "add", "10.77.0.99/24", "dev", "eth0"], check=True)
        subprocess.run([*ip, "link", "set", "eth0", "up"], check=True)
        subprocess.run([*ip, "link", "set", "lo", "up"], check=True)
        env = {k: v for k, v in cluster.env.items()}
        env.update({"LD_PRELOAD": cluster.paths["library"], "OGRT_ACTIVE": "1", "SLURM_JOB_ID": "990099",
                    "SLURM_JOB_USER": "stranger"})
        ogrt = str(Path(cluster.paths["root"]) / "opt" / "ogrt" / "venv" / "bin" / "ogrt")
        for _ in range(3):
            subprocess.run(["ip", "netns", "exec", ns, "/bin/true"], env=env, check=True, timeout=60)
        clean = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
        sent = subprocess.run(["ip", "netns", "exec", ns, ogrt, "job-event", "start", "--collector",
                               "10.77.0.1:7971"], env=clean, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent
        deadline = time.monotonic() + 30
        while cluster.metric('ogrt_rejected_total{reason="not_allowed"}') < before + 4:
            assert time.monotonic() < deadline, "rejections not counted"
            time.sleep(0.5)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    # a job of the cluster is still taken, and nothing of the stranger was stored
    job, code = cluster.sbatch("srun -N1 -n1 true\n", name="inside")
    assert code == 0 and cluster.job_row(job)[2] == "COMPLETED"
    assert cluster.query("SELECT count(*) FROM processes WHERE job_id = '990099' OR peer LIKE '10.77.0.99%'",
                         until=lambda rows: True)[0][0] == 0
    assert cluster.query("SELECT count(*) FROM jobs WHERE job_id = '990099'", until=lambda rows: True)[0][0] == 0


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
