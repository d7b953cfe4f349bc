#!/usr/bin/env bash
# `make demo`: OGRT end to end on this machine, in a private root (./.demo/root).
#
#   1. build the preload library with the demo's site settings and install it
#      (library + stamping tools) under .demo/root/opt/ogrt/preload, as `spack install ogrt` would;
#   2. deploy with `ansible-playbook site.yml` (roles ogrt_server and ogrt_modulefile,
#      inventory/local.yml: localhost, connection local) into .demo/root;
#   3. start the deployed daemon (deployed venv, deployed ogrt.conf, SQLite output);
#   4. build a stamped program with ogrt-cc;
#   5. run a small job under `module load ogrt` (real Lmod) with SLURM_JOB_ID=demo-...:
#      a shell pipeline, a Python script importing C extensions, the stamped program,
#      a failing command;
#   6. stop the daemon with SIGTERM (it flushes every record);
#   7. index this machine's Debian packages (`ogrt census update --dpkg`);
#   8. print the reports: executables (with their packages), software, libraries --path _ssl,
#      signatures, the job's tree.
#
# Run from `make demo` (which installs the Debian packages and the venv first), or directly
# once .venv exists. Safe to run again: each run is a new job id in the same database.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${OGRT_DEMO_VENV:-$REPO/.venv}
DEMO=$REPO/.demo
ROOT=$DEMO/root
PREFIX=$ROOT/opt/ogrt/preload          # where the site's Spack would install the library
LIB=$PREFIX/'$LIB'/libogrt.so   # a literal $LIB: the loader picks the 64- or 32-bit build
DAEMON=$ROOT/opt/ogrt/venv/bin/ogrt    # deployed by roles/ogrt_server
CONF=$ROOT/etc/ogrt/ogrt.conf
DB=$ROOT/var/lib/ogrt/ogrt.sqlite
MODULES=$ROOT/opt/modulefiles
LMOD_INIT=${LMOD_INIT:-/usr/share/lmod/lmod/init/bash}
WORK=$DEMO/work
LOGS=$DEMO/logs
JOB_ID=demo-$(date -u +%Y%m%dT%H%M%SZ)-$$
server_pid=""

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\ndemo: FAILED: %s\n' "$*" >&2; exit 1; }
show_log() { echo "    --- last lines of $1 ---" >&2; tail -n "${2:-25}" "$1" | sed 's/^/    | /' >&2; }

# SIGTERM, then wait for the daemon to flush and exit (SIGKILL after 60 s: never hang).
stop_daemon() {
    [ -n "$server_pid" ] || return 0
    local pid=$server_pid rc=0 watchdog
    server_pid=""
    kill -TERM "$pid" 2>/dev/null || return 0
    ( sleep 60; kill -KILL "$pid" 2>/dev/null ) &
    watchdog=$!
    wait "$pid" || rc=$?
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    return "$rc"
}

cleanup() {
    local rc=$?
    if [ -n "$server_pid" ]; then
        echo "==> stopping the daemon (pid $server_pid)" >&2
        stop_daemon || true
    fi
    if [ "$rc" -ne 0 ]; then
        echo "demo: logs are in $LOGS" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two loopback ports free for TCP and UDP alike (daemon, metrics): the previous run's
# when they are still free, so that a second run redeploys nothing (changed=0).
pick_ports() {
    "$VENV/bin/python" - "$@" <<'PY'
import socket, sys

def free(port):
    socks = []
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()

previous = [int(p) for p in sys.argv[1:] if p.isdigit()]
if len(previous) == 2 and previous[0] != previous[1] and all(map(free, previous)):
    print(*previous)
    sys.exit(0)
ports = []
while len(ports) < 2:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    if port not in ports and free(port):
        ports.append(port)
print(*ports)
PY
}

[ -x "$VENV/bin/python" ] || die "no venv at $VENV: run 'make demo' (it creates it)"
[ -r "$LMOD_INIT" ] || die "Lmod not found ($LMOD_INIT): install the Debian package lmod"
command -v gcc >/dev/null || die "gcc not found: install the Debian package gcc"

rm -rf "$DEMO/build" "$WORK" "$LOGS"
mkdir -p "$WORK" "$LOGS" "$ROOT"
# a database an older OGRT made (another schema version) would be refused: set it aside
if [ -f "$DB" ] && ! (cd "$REPO" && "$VENV/bin/python" -c '
import sqlite3, sys
from ogrt.sql.schema import SCHEMA_VERSION
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
sys.exit([v for (v,) in db.execute("SELECT version FROM schema_version")] != [SCHEMA_VERSION])' "$DB" 2>/dev/null); then
    for f in "$DB" "$DB-wal" "$DB-shm"; do [ -e "$f" ] && mv -f "$f" "${f/ogrt.sqlite/ogrt.old.sqlite}"; done
    echo "    $DB was made by another OGRT version (schema): moved to ${DB%.sqlite}.old.sqlite"
fi
# shellcheck disable=SC2046
read -r PORT METRICS_PORT < <(pick_ports $(cat "$DEMO/ports" 2>/dev/null || true)) || true
[ -n "${PORT:-}" ] && [ -n "${METRICS_PORT:-}" ] || die "no free loopback port"
echo "$PORT $METRICS_PORT" >"$DEMO/ports"

step "building the preload library (SERVER_HOST=127.0.0.1 SERVER_PORT=$PORT JOBID_VAR=SLURM_JOB_ID) into $PREFIX"
make -C "$REPO/preload" install BUILDDIR="$DEMO/build" PREFIX="$PREFIX" \
    SERVER_HOST=127.0.0.1 SERVER_PORT="$PORT" JOBID_VAR=SLURM_JOB_ID TRANSPORT=tcp \
    >"$LOGS/preload.log" 2>&1 || { show_log "$LOGS/preload.log"; die "building the preload library"; }
[ -f "$LIB" ] || die "$LIB was not installed"
echo "    installed $LIB and $PREFIX/bin/ogrt-cc"

step "deploying with ansible-playbook site.yml into $ROOT (connection local)"
"$VENV/bin/python" - "$DEMO/vars.json" <<PY
import json, sys
json.dump({
    "ogrt_root": "$ROOT",
    "ogrt_modulefile_library": "$LIB",
    "ogrt_server_config": {
        "server": {"address": "127.0.0.1", "port": $PORT},
        "metrics": {"address": "127.0.0.1:$METRICS_PORT"},
        "outputs": {"db": {"type": "sqlite", "path": "$DB"}},
    },
    "ogrt_server_manage_user": False,
    "ogrt_server_user": "$(id -un)",
    "ogrt_server_group": "$(id -gn)",
}, open(sys.argv[1], "w"), indent=2)
PY
(
    cd "$REPO"
    export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0
    "$VENV/bin/ansible-playbook" -i inventory/local.yml site.yml -e "@$DEMO/vars.json"
) >"$LOGS/ansible.log" 2>&1 || { show_log "$LOGS/ansible.log" 40; die "ansible-playbook site.yml"; }
sed -n '/PLAY RECAP/,$p' "$LOGS/ansible.log" | sed '/^$/d; s/^/    /'
for f in "$DAEMON" "$CONF" "$MODULES/ogrt"; do
    [ -e "$f" ] || die "the deployment did not create $f"
done

step "starting the deployed daemon: $DAEMON server --config $CONF"
"$DAEMON" server --config "$CONF" 2>"$LOGS/server.log" &
server_pid=$!
for _ in $(seq 1 300); do
    grep -q "ogrt server ready" "$LOGS/server.log" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { server_pid=""; show_log "$LOGS/server.log"; die "the daemon exited"; }
    sleep 0.1
done
grep -q "ogrt server ready" "$LOGS/server.log" || { show_log "$LOGS/server.log"; die "the daemon did not get ready in 30 s"; }
echo "    pid $server_pid, listening on 127.0.0.1:$PORT (tcp, udp), metrics on 127.0.0.1:$METRICS_PORT"

step "building a stamped program with ogrt-cc (the stamping linker wrapper)"
"$PREFIX/bin/ogrt-cc" gcc -O2 -o "$WORK/hello" "$REPO/demo/hello.c" >"$LOGS/stamp.log" 2>&1 \
    || { show_log "$LOGS/stamp.log"; die "ogrt-cc gcc"; }
readelf -n "$WORK/hello" | grep 'OGRT' >/dev/null || die "ogrt-cc left no OGRT note in $WORK/hello (readelf -n)"
"$VENV/bin/python" - "$WORK/hello" <<'PY'
import re, sys
# the note's descriptor: a version byte, then the UUID text (see `readelf -n`)
m = re.search(rb"OGRT\0\0\0\0\x01([0-9a-f-]{36})", open(sys.argv[1], "rb").read())
print(f"    {sys.argv[1]}: ELF note OGRT, signature {m.group(1).decode() if m else '?'}")
PY

step "running the job $JOB_ID under 'module load ogrt' (Lmod)"
bash -c '
    source "$1" || exit 1
    module use "$2" || exit 1
    module load ogrt || exit 1
    [ "${OGRT_ACTIVE:-}" = 1 ] || { echo "module load ogrt did not set OGRT_ACTIVE" >&2; exit 1; }
    echo "    module load ogrt: LD_PRELOAD=$LD_PRELOAD OGRT_ACTIVE=$OGRT_ACTIVE"
    export SLURM_JOB_ID="$3"
    bash "$4/workload.sh" "$4" "$5"
' demo-job "$LMOD_INIT" "$MODULES" "$JOB_ID" "$REPO/demo" "$WORK/hello" \
    || die "the workload failed"

step "stopping the daemon with SIGTERM (it flushes every accepted record)"
received=$("$VENV/bin/python" - "$METRICS_PORT" <<'PY' || true
import sys, urllib.request
try:
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
except OSError:
    sys.exit(0)
total = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
            if l.startswith("ogrt_records_total") and " " in l)
print(int(total))
PY
)
rc=0
stop_daemon || rc=$?
[ "$rc" -eq 0 ] || { show_log "$LOGS/server.log"; die "the daemon exited with status $rc"; }
echo "    stopped (exit 0)${received:+; it had received $received records}"

step "ogrt census update --dpkg    (which Debian package each recorded path belongs to)"
"$DAEMON" census update --config "$CONF" --dpkg

REPORT=("$DAEMON" report --config "$CONF")
step "ogrt report executables --job $JOB_ID"
"${REPORT[@]}" executables --job "$JOB_ID"
step "ogrt report software --job $JOB_ID    (per package: the programs it ran and the libraries it loaded)"
"${REPORT[@]}" software --job "$JOB_ID"
step "ogrt report libraries --path _ssl --job $JOB_ID    (the C extension python dlopen'ed)"
"${REPORT[@]}" libraries --path _ssl --job "$JOB_ID"
step "ogrt report signatures --job $JOB_ID    (stamped binaries: where and by whom they ran)"
"${REPORT[@]}" signatures --job "$JOB_ID"
step "ogrt report job $JOB_ID    (the process tree; a → b is an exec chain)"
"${REPORT[@]}" job "$JOB_ID"

step "done. The records are in $DB; try for example:"
echo "    $DAEMON report --config $CONF users"
echo "    $DAEMON report --config $CONF libraries --path libc --by job"
echo "    $DAEMON report --config $CONF job $JOB_ID --format json"
