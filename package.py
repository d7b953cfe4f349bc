# Spack recipe of OGRT's preload library (Package API v2, Spack 1.x; loads on Spack 0.2x too).
#
# A site adds it to its own Spack package repository:
#   spack repo create /opt/site-repo site        # once (Spack >= 1.0: creates spack_repo/site)
#   mkdir -p <repo packages dir>/ogrt && cp package.py <repo packages dir>/ogrt/
#   spack repo add <repo dir>
#   spack install ogrt server_host=collector.example server_port=7971 jobid_var=SLURM_JOB_ID
#
# The site's settings are compiled into libogrt.so (preload/Makefile variables).
import os
import re

from spack.package import *

try:  # Spack 1.x: build systems live in the builtin package repository
    from spack_repo.builtin.build_systems.makefile import MakefilePackage
except ImportError:  # Spack 0.2x: `from spack.package import *` provided it
    pass


def _valid_port(value):
    """Variant validator: an integer 1-65535."""
    return bool(re.fullmatch(r"[0-9]{1,5}", str(value))) and 1 <= int(value) <= 65535


def _valid_timeout(value):
    """Variant validator: a positive integer of milliseconds (at most one hour)."""
    return bool(re.fullmatch(r"[0-9]{1,7}", str(value))) and 1 <= int(value) <= 3600000


def _valid_host(value):
    """Variant validator: a host name or an IPv4/IPv6 address."""
    return bool(re.fullmatch(r"[A-Za-z0-9._:-]{1,253}", str(value)))


def _valid_env_name(value):
    """Variant validator: an environment variable name ("none" for no variable)."""
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(value)))


class Ogrt(MakefilePackage):
    """OGRT records every process started on HPC compute and login nodes (binary, shared
    libraries incl. dlopen, job, user, resource usage) and reports it to a collector daemon.
    This package is the LD_PRELOAD library; load it with the `ogrt` modulefile."""

    homepage = "https://github.com/ogrt/ogrt"
    git = "https://github.com/ogrt/ogrt.git"

    maintainers("ogrt")
    license("MIT")

    version("main", branch="main")
    version("0.1.0", tag="v0.1.0")

    variant(
        "server_host",
        default="localhost",
        values=_valid_host,
        description="Host name or address of the OGRT collector daemon",
    )
    variant(
        "server_port",
        default="7971",
        values=_valid_port,
        description="Port of the collector daemon (1-65535)",
    )
    variant(
        "jobid_var",
        default="SLURM_JOB_ID",
        values=_valid_env_name,
        description="Environment variable holding the batch job id",
    )
    variant(
        "transport",
        default="tcp",
        values=("tcp", "udp"),
        multi=False,
        description="How records reach the collector",
    )
    variant(
        "env_whitelist",
        default="none",
        values=_valid_env_name,
        multi=True,
        description="Environment variables reported with each process (none: no variable)",
    )
    variant("send_cmdline", default=True, description="Report full command lines (argv)")
    variant(
        "connect_timeout_ms",
        default="50",
        values=_valid_timeout,
        description="Longest wait (ms) for the collector before a process goes on without it",
    )
    variant(
        "allow_server_env",
        default=False,
        description="Let OGRT_SERVER in a user's environment override server_host/port",
    )

    depends_on("c", type="build")

    build_directory = "preload"

    @property
    def make_variables(self):
        """The preload Makefile's variables for this spec (the one place they are set)."""
        spec = self.spec
        whitelist = [v for v in spec.variants["env_whitelist"].value if v != "none"]
        return [
            f"SERVER_HOST={spec.variants['server_host'].value}",
            f"SERVER_PORT={spec.variants['server_port'].value}",
            f"JOBID_VAR={spec.variants['jobid_var'].value}",
            f"TRANSPORT={spec.variants['transport'].value}",
            f"ENV_WHITELIST={','.join(whitelist)}",
            f"SEND_CMDLINE={'yes' if spec.satisfies('+send_cmdline') else 'no'}",
            f"CONNECT_TIMEOUT_MS={spec.variants['connect_timeout_ms'].value}",
            f"ALLOW_SERVER_ENV={'yes' if spec.satisfies('+allow_server_env') else 'no'}",
        ]

    @property
    def build_targets(self):
        return ["all"] + self.make_variables

    @property
    def install_targets(self):
        return ["install", f"PREFIX={self.prefix}"] + self.make_variables

    def check(self):
        """`spack install --test=root`: the Makefile's own self-checks of the built library."""
        with working_dir(self.build_directory):
            make("check", *self.make_variables)

    # ---- stand-alone tests: `spack test run ogrt` -------------------------------------
    def _run_under_library(self, *argv, **env_vars):
        """Run argv under the installed library; return (stdout+stderr) text."""
        lib = join_path(self.prefix.lib, "libogrt.so")
        program = which(argv[0], required=True)
        saved = {name: os.environ.get(name) for name in ["LD_PRELOAD", *env_vars]}
        for name in ("OGRT_SILENT", "OGRT_SCHLEICHFAHRT", "OGRT_DEBUG", "OGRT_DEBUG_INFO"):
            saved.setdefault(name, os.environ.get(name))
            os.environ.pop(name, None)
        try:
            os.environ["LD_PRELOAD"] = lib
            os.environ.update(env_vars)
            return program(*argv[1:], output=str, error=str)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def test_settings(self):
        """OGRT_DEBUG_INFO=1 shows the settings compiled in from the variants"""
        out = self._run_under_library("true", OGRT_DEBUG_INFO="1")
        spec = self.spec
        expected = [
            f"OGRT server_host: {spec.variants['server_host'].value}",
            f"OGRT server_port: {spec.variants['server_port'].value}",
            f"OGRT jobid_var: {spec.variants['jobid_var'].value}",
            f"OGRT transport: {spec.variants['transport'].value}",
        ]
        for line in expected:
            assert line in out, f"'{line}' missing from OGRT_DEBUG_INFO output:\n{out}"

    def test_program_unchanged(self):
        """a program under the active library exits 0 with unchanged output"""
        marker = "ogrt stand-alone test: output must pass through unchanged"
        out = self._run_under_library("echo", marker, OGRT_ACTIVE="1")
        assert out == marker + "\n", f"unexpected output under libogrt.so: {out!r}"
