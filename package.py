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


# BEGIN settings: generated from preload/settings.tsv by `python3 preload/gensettings.py`
# (make variable, kind, default, bounds, description): see preload/settings.tsv
_SETTINGS = (
    ('SERVER_HOST', 'hosts', 'localhost', '1..1023', 'collectors: host, host:port or [v6addr]:port entries, comma-separated (SERVER_PORT where none is given); each node tries first the one its node name hashes to, then the next (names: /etc/hosts first; only others use the resolver)'),
    ('SERVER_PORT', 'uint', '7971', '1..65535', "the collectors' TCP/UDP port (of SERVER_HOST entries without one)"),
    ('JOBID_VAR', 'envname', 'SLURM_JOB_ID', '', 'environment variable holding the job id (PBS_JOBID, ...)'),
    ('TRANSPORT', 'choice', 'tcp', 'tcp|udp|relay', "tcp: one short connection per record; udp: datagrams (records over 60,000 bytes are split into Fragment frames); relay: the UDP datagrams on the node's Unix socket RELAY_SOCKET, falling back to tcp when it is missing, refused or full"),
    ('RELAY_SOCKET', 'path', '/run/ogrt/relay.sock', '1..107', "the node relay's Unix datagram socket (TRANSPORT=relay)"),
    ('CONNECT_TIMEOUT_MS', 'uint', '50', '1..60000', 'bound of a TCP connect in ms (a LAN answers a SYN in well under 1 ms; a lost SYN is retried only after 1 s)'),
    ('BACKOFF_SECONDS', 'uint', '60', '0..86400', "after a connect timeout, this user's processes on the node skip that server this long (0: never)"),
    ('ENV_WHITELIST', 'envnames', '', '', 'environment variables sent with each process (empty: none)'),
    ('SEND_CMDLINE', 'yesno', 'yes', '', "send each process's argv"),
    ('FILTER_REGEXPS', 'regexps', '', '', "executables whose path matches one of these regexes are not tracked (':' inside [...] does not split)"),
    ('ALLOW_SERVER_ENV', 'yesno', 'no', '', "let OGRT_SERVER=host:port or [v6addr]:port (a comma list of them) in a user's environment override SERVER_HOST"),
)
# END settings


def _check(kind, bounds):
    """The variant value validator of one setting kind: the rules preload/genconfig.sh applies
    to the make variable (a value it refuses is refused here, at concretization)."""
    lo, _, hi = bounds.partition("..")
    if kind == "uint":
        def valid(value):
            return bool(re.fullmatch(r"0|[1-9][0-9]*", str(value))) and int(lo) <= int(value) <= int(hi)
        valid.__doc__ = f"a whole number {lo}..{hi}"
    elif kind == "host":
        def valid(value):
            return bool(re.fullmatch(rf"[A-Za-z0-9.:_-]{{{lo},{hi}}}", str(value)))
        valid.__doc__ = f"a host name, IPv4 or IPv6 address ({lo}..{hi} characters)"
    elif kind == "hosts":
        # Spack splits the value on ',': each entry is checked (and they are joined again)
        def valid(value):
            m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]+)|([A-Za-z0-9._-]+)(?::([0-9]+))?|([0-9A-Fa-f.]*:[0-9A-Fa-f.:]*:[0-9A-Fa-f.:]*)",
                             str(value))
            port = m and (m.group(2) or m.group(4))
            return bool(m) and len(str(value)) <= min(int(hi), 253 + 8) and (
                not port or (re.fullmatch(r"[1-9][0-9]{0,4}", port) is not None and int(port) <= 65535))
        valid.__doc__ = ("collectors: host, host:port or [v6addr]:port entries, comma-separated "
                         f"(at most 16, {lo}..{hi} characters)")
    elif kind == "path":
        def valid(value):
            return bool(re.fullmatch(r"/[A-Za-z0-9._+/-]*", str(value))) and int(lo) <= len(str(value)) <= int(hi)
        valid.__doc__ = f"an absolute path of A-Z a-z 0-9 . _ - + / ({lo}..{hi} characters)"
    elif kind in ("envname", "envnames"):
        def valid(value):
            return (kind == "envnames" and value == "none") or bool(
                re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(value)))
        valid.__doc__ = "environment variable names (none: no variable)" if kind == "envnames" \
            else "an environment variable name"
    elif kind == "regexps":
        # Spack splits every variant value on ',' and re-quotes a value holding "'" in a way
        # that doubles its backslashes: neither can pass through, control characters are refused.
        def valid(value):
            return bool(re.fullmatch(r"[^\x00-\x1f\x7f']+", str(value)))
        valid.__doc__ = "':'-separated POSIX extended regexes without ',' or \"'\" (none: no filter)"
    else:
        raise ValueError(f"unknown kind {kind!r} of a setting")
    return valid


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

    for _name, _kind, _default, _bounds, _description in _SETTINGS:
        if _kind == "yesno":
            variant(_name.lower(), default=_default == "yes", description=_description)
        elif _kind == "choice":
            variant(_name.lower(), default=_default, values=tuple(_bounds.split("|")),
                    multi=False, description=_description)
        else:  # `spack info` shows no values for a validator: the description names them
            _valid = _check(_kind, _bounds)
            variant(_name.lower(), default=_default or "none", values=_valid,
                    multi=_kind in ("envnames", "hosts"), description=f"{_description}; {_valid.__doc__}")
            del _valid
    del _name, _kind, _default, _bounds, _description

    depends_on("c", type="build")

    build_directory = "preload"

    @property
    def make_variables(self):
        """The preload Makefile's variables for this spec (the one place they are set)."""
        result = []
        for name, kind, _, _, _ in _SETTINGS:
            value = self.spec.variants[name.lower()].value
            if kind == "yesno":
                value = "yes" if value else "no"
            elif kind == "envnames":
                value = ",".join(v for v in value if v != "none")
            elif kind == "hosts":
                value = ",".join(value)
            elif kind == "regexps" and value == "none":  # no filter
                value = ""
            result.append(f"{name}={value}")
        return result

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
        """OGRT_DEBUG_INFO=1 shows every setting compiled in from the variants"""
        out = self._run_under_library("true", OGRT_DEBUG_INFO="1").splitlines()
        for assignment in self.make_variables:
            name, _, value = assignment.partition("=")
            line = f"OGRT {name.lower()}: {value}"
            assert line in out, f"'{line}' missing from OGRT_DEBUG_INFO output:\n{out}"

    def test_program_unchanged(self):
        """a program under the active library exits 0 with unchanged output"""
        marker = "ogrt stand-alone test: output must pass through unchanged"
        out = self._run_under_library("echo", marker, OGRT_ACTIVE="1")
        assert out == marker + "\n", f"unexpected output under libogrt.so: {out!r}"
