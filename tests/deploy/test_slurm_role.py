"""roles/ogrt_slurm with the real ansible-playbook (site.yml, --tags ogrt_slurm): what it
writes, idempotence, --check, argument checks; the written hooks run for real: the
TaskProlog under sh, the controller hook against a real `ogrt server`."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.helpers import VENV_BIN, changed_tasks, local_inventory, recap, render, run_playbook
from tests.server.test_job_event import PROLOG

LIB = "/opt/site/ogrt/$LIB/libogrt.so"  # a literal $LIB, as the loader expands it


def _play(tmp: Path, variables: dict, *args: str):
    tmp.mkdir(parents=True, exist_ok=True)
    return run_playbook(tmp / "run", variables, "--tags", "ogrt_slurm", *args, inventory=local_inventory(tmp, "slurm_controllers", "slurm_nodes"))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    tmp = tmp_path_factory.mktemp("slurm-role")
    root = tmp / "root"
    variables = {"ogrt_root": str(root), "ogrt_slurm_library": LIB,
                 "ogrt_slurm_collectors": ["127.0.0.1:1", "[::1]:1"], "ogrt_slurm_timeout": 1,
                 "ogrt_slurm_ogrt": str(VENV_BIN / "ogrt")}
    first = _play(tmp / "first", variables)
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-2000:]
    assert recap(first)["changed"] > 0
    return root, variables, tmp


def test_writes_the_hooks_and_the_snippet(deployed) -> None:
    root, _, _ = deployed
    hooks = root / "etc" / "ogrt" / "slurm"
    snippet = (root / "etc" / "slurm" / "ogrt.conf").read_text()
    assert [line for line in snippet.splitlines() if not line.startswith("#")] == [
        f"TaskProlog={hooks}/task-prolog.sh", f"PrologSlurmctld={hooks}/prolog-slurmctld.sh",
        f"EpilogSlurmctld={hooks}/epilog-slurmctld.sh", "JobCompType=jobcomp/script",
        f"JobCompLoc={hooks}/jobcomp.sh"]
    for name in ("task-prolog.sh", "prolog-slurmctld.sh", "epilog-slurmctld.sh", "jobcomp.sh"):
        assert os.access(hooks / name, os.X_OK), name
    assert "job-event start" in (hooks / "prolog-slurmctld.sh").read_text()
    assert "job-event end" in (hooks / "jobcomp.sh").read_text()


def test_second_run_and_check_mode_change_nothing(deployed) -> None:
    root, variables, tmp = deployed
    again = _play(tmp / "again", variables)
    assert again.returncode == 0 and recap(again)["changed"] == 0, changed_tasks(again)
    check = _play(tmp / "check", variables, "--check", "--diff")
    assert check.returncode == 0 and recap(check)["changed"] == 0, changed_tasks(check)
    fresh = tmp / "fresh"
    check = _play(tmp / "check-fresh", {**variables, "ogrt_root": str(fresh)}, "--check")
    assert check.returncode == 0 and recap(check)["changed"] > 0
    assert not fresh.exists()


@pytest.mark.parametrize(("bad", "expected"), [
    ({"ogrt_slurm_collectors": None}, "ogrt_slurm_collectors"),
    ({"ogrt_slurm_collectors": ["collector.example.org:7971"]}, "IP:port"),
    ({"ogrt_slurm_library": "/opt/a b/libogrt.so"}, "splits LD_PRELOAD"),
    ({"ogrt_slurm_user_opt_out": "maybe"}, "ogrt_slurm_user_opt_out"),
])
def test_bad_variables_fail_before_anything_is_written(tmp_path: Path, bad: dict, expected: str) -> None:
    root = tmp_path / "root"
    variables = {"ogrt_root": str(root), "ogrt_slurm_library": LIB, "ogrt_slurm_collectors": ["10.0.0.1:7971"],
                 **bad}
    if bad.get("ogrt_slurm_collectors", "") is None:
        del variables["ogrt_slurm_collectors"]
    proc = _play(tmp_path, variables)
    assert proc.returncode != 0 and expected in proc.stdout.replace("\n", " "), proc.stdout[-3000:]
    assert not root.exists()


def _task_prolog(tmp_path: Path, opt_out: bool, env: dict[str, str]) -> list[str]:
    script = tmp_path / f"task-prolog-{opt_out}.sh"
    script.write_text(render("ogrt_slurm", "task-prolog.sh.j2", {
        "ogrt_slurm_library": LIB, "ogrt_slurm_user_opt_out": opt_out}))
    base = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(["/bin/sh", str(script)], env={**base, **env}, capture_output=True, text=True,
                          timeout=30)
    # (sh itself runs under the test's made-up LD_PRELOAD: only ld.so may complain)
    assert proc.returncode == 0 and all(line.startswith("ERROR: ld.so:") for line in proc.stderr.splitlines()), proc
    return proc.stdout.splitlines()


def test_task_prolog_prepends_the_library_and_honours_the_switch(tmp_path: Path) -> None:
    on = f"export LD_PRELOAD={LIB}"
    assert _task_prolog(tmp_path, True, {}) == [on, "export OGRT_ACTIVE=1"]
    assert _task_prolog(tmp_path, True, {"LD_PRELOAD": "/a.so /b.so"}) == [
        f"{on}:/a.so /b.so", "export OGRT_ACTIVE=1"]
    # already there (a step inside a tracked batch script): not twice
    assert _task_prolog(tmp_path, True, {"LD_PRELOAD": f"/a.so:{LIB}"}) == ["export OGRT_ACTIVE=1"]
    assert _task_prolog(tmp_path, True, {"LD_PRELOAD": f"{LIB}x.so"}) == [
        f"{on}:{LIB}x.so", "export OGRT_ACTIVE=1"]
    # the job opted out: nothing changed; unless the site does not allow opting out
    assert _task_prolog(tmp_path, True, {"OGRT_ACTIVE": "0", "LD_PRELOAD": "/a.so"}) == []
    assert _task_prolog(tmp_path, False, {"OGRT_ACTIVE": "0", "LD_PRELOAD": "/a.so"}) == [
        f"{on}:/a.so", "export OGRT_ACTIVE=1"]


def test_controller_hook_sends_or_exits_0(deployed, ogrt_server) -> None:
    root, variables, tmp = deployed
    hook = root / "etc" / "ogrt" / "slurm" / "prolog-slurmctld.sh"
    log = root / "var" / "log" / "ogrt" / "job-event.log"
    # the collectors of the deployment do not listen: exit 0, one line in the hook log
    proc = subprocess.run([str(hook)], env=PROLOG, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == proc.stderr == ""
    assert log.read_text().splitlines()[-1].startswith("ogrt job-event start: job 6 not sent: no collector")
    # pointed at a running collector, the same hook delivers the job record
    srv = ogrt_server()
    again = _play(tmp / "live", {**variables, "ogrt_slurm_collectors": [f"127.0.0.1:{srv.port}"]})
    assert again.returncode == 0
    proc = subprocess.run([str(hook)], env=PROLOG, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    [rec] = srv.records(1)
    assert (rec["event"], rec["job_id"], rec["user"], rec["nodelist"]) == ("job_start", "6", "ogrtuser", "node[1-2]")
