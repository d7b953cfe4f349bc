"""Helpers of the deployment tests: run the real ansible-playbook, render templates, Lmod."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import jinja2

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
ROLES = REPO / "roles"
LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")


def ansible_env(tmp: Path) -> dict[str, str]:
    """Environment for ansible-playbook: no colours, private temp dirs, the repo's config."""
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("ANSIBLE_", "OGRT_")) or name == "LD_PRELOAD":
            del env[name]
    env.update({
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-remote"),
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
    })
    return env


def run_playbook(tmp: Path, extra_vars: dict[str, Any], *args: str,
                 playbook: Path = REPO / "site.yml",
                 inventory: Path = REPO / "inventory" / "local.yml",
                 extra_env: dict[str, str] | None = None, cwd: Path = REPO,
                 timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run the real ansible-playbook with extra vars (as a JSON file) and return the result."""
    tmp.mkdir(parents=True, exist_ok=True)
    vars_file = tmp / f"vars-{len(list(tmp.glob('vars-*.json')))}.json"
    vars_file.write_text(json.dumps(extra_vars))
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook),
           "-e", f"@{vars_file}", *args]
    env = ansible_env(tmp)
    env.update(extra_env or {})
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def snapshot_source(dest: Path) -> Path:
    """A frozen copy of the Python project (other parts keep changing the working tree
    while the suite runs; idempotence is checked against an unchanging source)."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "ogrt", dest / "ogrt",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def build_wheel(source: Path, dest: Path) -> Path:
    """The ogrt wheel of `source`, built into `dest` as the role builds it (pip wheel, no
    deps, the suite's setuptools, setuptools' build directories outside the source)."""
    dest.mkdir(parents=True)
    (dest / "setuptools.cfg").write_text(
        f"[build]\nbuild_base = {dest / 'build'}\n[egg_info]\negg_base = {dest}\n")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800",
           "DIST_EXTRA_CONFIG": str(dest / "setuptools.cfg")}
    proc = subprocess.run([str(VENV_BIN / "python"), "-m", "pip", "wheel", "--quiet", "--no-deps",
                           "--no-build-isolation", "--wheel-dir", str(dest), str(source)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = dest.glob("ogrt-*.whl")
    return wheel


def local_deploy_vars(root: Path, wheel: Path) -> dict[str, Any]:
    """The role variables of a test deployment into `root` as the current user, installing
    the given wheel (tests/deploy/conftest.py builds it once; test_deploy.py has the role
    build it from a source)."""
    user = os.environ.get("USER") or "root"
    return {"ogrt_root": str(root), "ogrt_server_wheel": str(wheel),
            "ogrt_server_manage_user": False,
            "ogrt_server_user": user, "ogrt_server_group": user}


def local_inventory(tmp: Path, *groups: str) -> Path:
    """inventory/local.yml's localhost, also in each of `groups`."""
    path = tmp / "inventory.yml"
    path.write_text((REPO / "inventory" / "local.yml").read_text()
                    + "".join(f"    {g}:\n      hosts:\n        localhost:\n" for g in groups))
    return path


def recap(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The PLAY RECAP counters of localhost (ok, changed, failed, ...)."""
    m = re.search(r"^localhost\s+:\s+(.*)$", proc.stdout, re.M)
    assert m, f"no PLAY RECAP in output:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def changed_tasks(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """Names of the tasks that reported `changed` (for clear assertion messages)."""
    names, current = [], ""
    for line in proc.stdout.splitlines():
        if line.startswith("TASK ["):
            current = line
        elif line.startswith("changed:"):
            names.append(current)
    return names


def free_port() -> int:
    """A loopback port free for both TCP and UDP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free TCP+UDP port")


def role_filters(role: str) -> dict[str, Any]:
    """The filters a role carries in its filter_plugins/ (loaded like Ansible does)."""
    filters: dict[str, Any] = {}
    for path in sorted((ROLES / role / "filter_plugins").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_role_filters_{role}_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        filters.update(module.FilterModule().filters())
    return filters


def ansible_jinja_env(role: str) -> jinja2.Environment:
    """A Jinja2 environment like Ansible's template module in a role: the role's templates/,
    Ansible's filters and tests plus the role's own filters, trim_blocks, trailing newline
    kept, undefined variables are errors."""
    from ansible.plugins.filter.core import FilterModule
    from ansible.plugins.test.core import TestModule

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLES / role / "templates")),
                             trim_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    filters = FilterModule().filters()
    filters.pop("default", None)  # Ansible's version expects its own Undefined type
    env.filters.update(filters)
    env.filters.update(role_filters(role))
    env.tests.update(TestModule().tests())
    return env


def render(role: str, template: str, variables: dict[str, Any]) -> str:
    """roles/<role>/templates/<template> rendered with variables."""
    return ansible_jinja_env(role).get_template(template).render(**variables)


def lmod_script(*lines: str) -> subprocess.CompletedProcess[str]:
    """Run bash lines after sourcing Lmod's init (no profile: a clean module environment)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LMOD", "MODULE", "__LMOD", "_ModuleTable", "LOADEDMODULES",
                                "_LMFILES_", "OGRT_"))
           and k != "LD_PRELOAD"}
    script = "\n".join([f"source {LMOD_INIT}", *lines])
    return subprocess.run(["bash", "--noprofile", "--norc", "-c", script], env=env,
                          capture_output=True, text=True, timeout=120)


def have(program: str) -> bool:
    return shutil.which(program) is not None


def lua_interpreter() -> str | None:
    """A Lua interpreter (Debian's lmod depends on lua5.3, installed as lua5.3 and lua)."""
    for name in ("lua", "lua5.3", "lua5.4", "lua5.1"):
        if have(name):
            return shutil.which(name)
    return None
