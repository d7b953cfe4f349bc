#!/usr/bin/env bash
# demo/cluster.sh: a virtual Slurm cluster in one box, with OGRT deployed on it.
#
#   demo/cluster.sh up                              start what is not running (idempotent)
#   demo/cluster.sh exec HOST [--user NAME] -- CMD  run CMD on head|node1|node2
#   demo/cluster.sh report ARGS...                  ogrt report ARGS on the collector's database
#   demo/cluster.sh collector stop|start            stop (SIGTERM, by pid) / start the collector
#   demo/cluster.sh status                          what runs, the namespaces, sinfo
#   demo/cluster.sh paths                           NAME=VALUE lines: where the cluster's files are
#   demo/cluster.sh down                            stop everything by pid, remove it all
#
# Hosts: head (10.77.0.1: slurmctld, the OGRT collector, munged), node1 (10.77.0.11) and
# node2 (10.77.0.12) (slurmd each). Each host is a network namespace "<ns>-HOST", and every
# daemon runs with its host's name in a UTS namespace of its own. The namespaces are joined
# by the bridge ogrtbr0, which lives in a namespace "<ns>-net" of its own: no interface,
# address or route of the machine is touched, and 10.77.0.0/24 exists only inside.
# Slurm 22.05 (Debian) runs without systemd or cgroup mounts (proctrack/linuxproc, task/none).
# OGRT: the preload library is built for the collector at 10.77.0.1 and installed into a
# private root, and `ansible-playbook site.yml` deploys the collector, the modulefile and the
# Slurm hooks (roles/ogrt_slurm) there; slurm.conf includes the role's snippet, so every task
# runs under the library (TaskProlog) and every job sends a start and end record. The
# collector takes records only from 10.77.0.0/28 (head, node1, node2).
#
# Settings (environment):
#   OGRT_CLUSTER_DIR  state dir: configuration, keys, logs, pid files, the private root
#                     (default: .cluster in the repository)
#   OGRT_CLUSTER_NS   prefix of the namespace names (default: ogrt); set it to run a second
#                     cluster beside the first
#   OGRT_CLUSTER_VENV the project venv with ansible-playbook (default: .venv in the repository)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$REPO/demo/cluster.sh
STATE=${OGRT_CLUSTER_DIR:-$REPO/.cluster}
NS=${OGRT_CLUSTER_NS:-ogrt}
VENV=${OGRT_CLUSTER_VENV:-$REPO/.venv}

HOSTS=(head node1 node2)
NODES=(node1 node2)
declare -A ADDR=([head]=10.77.0.1 [node1]=10.77.0.11 [node2]=10.77.0.12)
BRIDGE=ogrtbr0
NETNS_BRIDGE=net                   # the bridge's own namespace: "$NS-net"
COLLECTOR_PORT=7971
METRICS_PORT=9971
JOB_USER=ogrtuser
DAEMONS=(munged slurmctld slurmd-node1 slurmd-node2 collector)   # run/NAME.pid, log/NAME.log

RUN=$STATE/run                     # pid files
LOGS=$STATE/log
ETC=$STATE/etc                     # slurm.conf, cgroup.conf, plugstack.conf
ROOT=$STATE/root                   # the private root OGRT is deployed into
PRELOAD=$ROOT/opt/ogrt/preload     # where a site's Spack would install the library
LIB=$PRELOAD/'$LIB'/libogrt.so   # a literal \$LIB: the loader picks the 64- or 32-bit build
OGRT=$ROOT/opt/ogrt/venv/bin/ogrt  # deployed by roles/ogrt_server
CONF=$ROOT/etc/ogrt/ogrt.conf
SLURM_SNIPPET=$ROOT/etc/slurm/ogrt.conf   # written by roles/ogrt_slurm, included by slurm.conf
HOOK_LOG=$ROOT/var/log/ogrt/job-event.log
ALLOWED_NETWORK=10.77.0.0/28       # the collector's allowed_networks: .0-.15
DB=$ROOT/var/lib/ogrt/ogrt.sqlite
MUNGE_SOCKET=$STATE/munge/munge.socket
export SLURM_CONF=$ETC/slurm.conf

say() { printf '==> %s\n' "$*"; }
die() { printf 'cluster.sh: %s\n' "$*" >&2; exit 1; }
show_log() {
    [ -f "$1" ] || return 0
    echo "    --- last lines of $1 ---" >&2
    tail -n "${2:-20}" "$1" | sed 's/^/    | /' >&2
}
usage() { sed -n '2,10p' "$SELF" | sed 's/^# \{0,1\}//' >&2; exit 2; }

require_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (it creates network namespaces, starts munged and the Slurm daemons); try: sudo $0 $*"
}

# ---------------------------------------------------------------------------------------------
# hosts: namespaces and processes

netns() { printf '%s-%s' "$NS" "$1"; }
have_netns() { [ -e "/run/netns/$(netns "$1")" ]; }
is_host() { [ -n "${ADDR[$1]:-}" ]; }

# host_argv HOST: HOSTCMD=(the command prefix that runs a command inside HOST's network
# namespace, in a UTS namespace of its own named HOST). Every step execs: the pid stays the same.
host_argv() {
    HOSTCMD=(ip netns exec "$(netns "$1")" unshare --uts -- /bin/sh -c 'hostname "$0" && exec "$@"' "$1")
}

# on HOST CMD...: exec CMD on HOST.
on() {
    host_argv "$1"; shift
    exec "${HOSTCMD[@]}" "$@"
}

# pid_of NAME: the live pid recorded for NAME, if it still runs in one of our namespaces.
pid_of() {
    local file=$RUN/$1.pid pid ns_link host
    [ -f "$file" ] || return 1
    pid=$(cat "$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    ns_link=$(readlink "/proc/$pid/ns/net" 2>/dev/null) || return 1
    for host in "${HOSTS[@]}"; do
        if have_netns "$host" && [ "$ns_link" = "net:[$(stat -L -c %i "/run/netns/$(netns "$host")")]" ]; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# start NAME HOST CMD...: CMD in the background on HOST (its own session, output to log/NAME.log),
# pid in run/NAME.pid. `ip netns exec`, `unshare` and `sh -c exec` all exec: the pid is CMD's.
start() {
    local name=$1 host=$2 pid; shift 2
    if pid=$(pid_of "$name"); then
        echo "    $name runs already (pid $pid)"
        return 0
    fi
    host_argv "$host"
    # its own session: a Ctrl-C or hang-up of the caller's terminal does not reach it
    ( exec setsid "${HOSTCMD[@]}" "$@" ) </dev/null >>"$LOGS/$name.log" 2>&1 &
    pid=$!
    echo "$pid" >"$RUN/$name.pid"
    echo "    $name on $host: pid $pid"
}

# stop SECONDS NAME...: SIGTERM to the recorded pids, all at once; wait until they have exited,
# SIGKILL to any still there after SECONDS.
stop() {
    local limit=$1 name pid i; shift
    local -A pids=()
    for name in "$@"; do
        if pid=$(pid_of "$name"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids[$name]=$pid
        fi
    done
    for ((i = 0; i < limit * 10; i++)); do
        for name in "${!pids[@]}"; do
            if [ ! -e "/proc/${pids[$name]}" ]; then
                echo "    stopped $name (pid ${pids[$name]})"
                unset "pids[$name]"
            fi
        done
        [ ${#pids[@]} -eq 0 ] && break
        sleep 0.1
    done
    for name in "${!pids[@]}"; do
        echo "    $name (pid ${pids[$name]}) still runs after ${limit}s: SIGKILL" >&2
        kill -KILL "${pids[$name]}" 2>/dev/null || true
    done
    for name in "$@"; do rm -f "$RUN/$name.pid"; done
}

# ---------------------------------------------------------------------------------------------
# up: network

net_up() {
    local host br_ns
    br_ns=$(netns "$NETNS_BRIDGE")
    if [ ! -e "/run/netns/$br_ns" ]; then
        ip netns add "$br_ns"
        ip -n "$br_ns" link set lo up
    fi
    ip -n "$br_ns" link show "$BRIDGE" >/dev/null 2>&1 || ip -n "$br_ns" link add "$BRIDGE" type bridge
    ip -n "$br_ns" link set "$BRIDGE" up
    for host in "${HOSTS[@]}"; do
        if ! have_netns "$host"; then
            ip netns add "$(netns "$host")"
            ip -n "$(netns "$host")" link set lo up
        fi
        # veth pair created inside the bridge namespace, its peer moved straight into the host's
        if ! ip -n "$(netns "$host")" link show eth0 >/dev/null 2>&1; then
            ip -n "$br_ns" link del "v-$host" 2>/dev/null || true
            ip -n "$br_ns" link add "v-$host" type veth peer name eth0 netns "$(netns "$host")"
        fi
        ip -n "$br_ns" link set "v-$host" master "$BRIDGE" up
        ip -n "$(netns "$host")" addr replace "${ADDR[$host]}/24" dev eth0
        ip -n "$(netns "$host")" link set eth0 up
    done
    echo "    namespaces $(for h in "${HOSTS[@]}"; do printf '%s ' "$(netns "$h")"; done)+ $br_ns (bridge $BRIDGE), 10.77.0.0/24"
}

# ---------------------------------------------------------------------------------------------
# up: munge and Slurm

munge_up() {
    mkdir -p "$STATE/munge"
    chmod 0755 "$STATE/munge"   # jobs of $JOB_USER reach the socket; the key stays 0600
    [ -s "$STATE/munge/munge.key" ] || mungekey --create --keyfile="$STATE/munge/munge.key" --bits=1024
    chmod 0600 "$STATE/munge/munge.key"
    start munged head munged --foreground --force \
        --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/munge.seed" \
        --log-file="$LOGS/munged.log"
    wait_for 10 test -S "$MUNGE_SOCKET" || { show_log "$LOGS/munged.log"; die "munged did not create $MUNGE_SOCKET within 10 s"; }
}

write_slurm_conf() {
    mkdir -p "$ETC" "$STATE/slurm/ctld"
    local node
    for node in "${NODES[@]}"; do mkdir -p "$STATE/slurm/$node"; done
    cat >"$ETC/cgroup.conf.new" <<'EOF'
# Nothing is mounted or moved into cgroups (proctrack/linuxproc, task/none).
CgroupPlugin=cgroup/v1
CgroupAutomount=no
EOF
    : >"$ETC/plugstack.conf.new"
    cat >"$ETC/slurm.conf.new" <<EOF
# Generated by demo/cluster.sh: the virtual cluster's Slurm configuration.
ClusterName=ogrt
SlurmctldHost=head(${ADDR[head]})
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$STATE/slurm/ctld
SlurmdSpoolDir=$STATE/slurm/%n
SlurmctldPidFile=$RUN/slurmctld-daemon.pid
SlurmdPidFile=$RUN/slurmd-%n-daemon.pid
SlurmctldLogFile=$LOGS/slurmctld-daemon.log
SlurmdLogFile=$LOGS/slurmd-%n-daemon.log
PlugStackConfig=$ETC/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# The nodes share this machine's CPUs: take the configured counts as they are.
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldDebug=info
SlurmdDebug=info
NodeName=node1 NodeAddr=${ADDR[node1]} CPUs=2 RealMemory=1000 State=UNKNOWN
NodeName=node2 NodeAddr=${ADDR[node2]} CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
# OGRT: TaskProlog, PrologSlurmctld, EpilogSlurmctld, JobCompType/JobCompLoc (roles/ogrt_slurm)
Include $SLURM_SNIPPET
EOF
    local f
    for f in slurm.conf cgroup.conf plugstack.conf; do
        if cmp -s "$ETC/$f.new" "$ETC/$f"; then rm "$ETC/$f.new"; else mv "$ETC/$f.new" "$ETC/$f"; fi
    done
    chmod 0644 "$ETC"/*.conf
}

slurm_up() {
    write_slurm_conf
    start slurmctld head slurmctld -D -f "$SLURM_CONF"
    local node
    for node in "${NODES[@]}"; do
        start "slurmd-$node" "$node" slurmd -D -N "$node" -f "$SLURM_CONF"
    done
}

# nodes_idle: both nodes idle in sinfo (asked on head).
nodes_idle() {
    local states
    states=$( (on head sinfo -h -N -o '%N %t') 2>/dev/null) || return 1
    [ "$(grep -cE '^node[12] idle$' <<<"$states")" = 2 ]
}

# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds; fail after SECONDS.
wait_for() {
    local limit=$1 i; shift
    for ((i = 0; i < limit * 5; i++)); do
        "$@" && return 0
        sleep 0.2
    done
    return 1
}

wait_nodes_idle() {
    if ! wait_for 60 nodes_idle; then
        echo "cluster.sh: the nodes did not become idle in sinfo within 60 s:" >&2
        (on head sinfo -N -l) >&2 2>&1 || true
        show_log "$LOGS/slurmctld-daemon.log"
        show_log "$LOGS/slurmctld.log" 10
        show_log "$LOGS/slurmd-node1-daemon.log"
        show_log "$LOGS/slurmd-node2-daemon.log"
        exit 1
    fi
    echo "    sinfo: node1 and node2 idle"
}

# ---------------------------------------------------------------------------------------------
# up: OGRT (library, deployment, collector)

user_up() {
    if ! id "$JOB_USER" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/bash "$JOB_USER"
        echo "    created user $JOB_USER"
    fi
    mkdir -p "$STATE/work"
    chown "$JOB_USER:" "$STATE/work"
}

library_up() {
    make -s -C "$REPO/preload" install BUILDDIR="$STATE/build/preload" PREFIX="$PRELOAD" \
        SERVER_HOST="${ADDR[head]}" SERVER_PORT="$COLLECTOR_PORT" JOBID_VAR=SLURM_JOB_ID TRANSPORT=tcp \
        >"$LOGS/preload-build.log" 2>&1 \
        || { show_log "$LOGS/preload-build.log"; die "building the preload library failed"; }
    [ -f "$LIB" ] || die "$LIB was not installed"
    echo "    $LIB (SERVER_HOST=${ADDR[head]} SERVER_PORT=$COLLECTOR_PORT)"
}

# The deployment: every variable of site.yml the cluster sets, and the one ansible-playbook call.
deploy() {
    ROOT=$ROOT LIB=$LIB DB=$DB HEAD=${ADDR[head]} PORT=$COLLECTOR_PORT METRICS=$METRICS_PORT \
        ALLOWED=$ALLOWED_NETWORK "$VENV/bin/python" - "$STATE/deploy-vars.json" <<'PY'
import json, os, sys
e = os.environ
json.dump({
    "ogrt_root": e["ROOT"],
    "ogrt_modulefile_library": e["LIB"],
    "ogrt_modulefile_default": True,
    "ogrt_slurm_library": e["LIB"],
    "ogrt_slurm_collectors": [f"{e['HEAD']}:{e['PORT']}"],
    "ogrt_server_config": {
        "server": {"address": e["HEAD"], "port": int(e["PORT"]), "transports": ["tcp", "udp"],
                   "allowed_networks": [e["ALLOWED"]]},
        "metrics": {"address": f"{e['HEAD']}:{e['METRICS']}"},
        "outputs": {"db": {"type": "sqlite", "path": e["DB"]}},
    },
    "ogrt_server_manage_user": False,
    "ogrt_server_user": "root",
    "ogrt_server_group": "root",
    "ogrt_server_build_isolation": False,   # the venv's setuptools builds the wheel: no download
}, open(sys.argv[1], "w"), indent=2)
PY
    (
        cd "$REPO"
        export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 \
            ANSIBLE_LOCAL_TEMP="$STATE/ansible/local" ANSIBLE_REMOTE_TEMP="$STATE/ansible/remote"
        export PATH="$VENV/bin:$PATH"
        # this machine is also the Slurm controller and the nodes (one file system)
        printf '%s\n' 'all:' '  children:' '    slurm_controllers: {hosts: {localhost: }}' \
            '    slurm_nodes: {hosts: {localhost: }}' >"$STATE/slurm-inventory.yml"
        "$VENV/bin/ansible-playbook" -i inventory/local.yml -i "$STATE/slurm-inventory.yml" site.yml \
            -e "@$STATE/deploy-vars.json"
    ) >"$LOGS/ansible.log" 2>&1 || { show_log "$LOGS/ansible.log" 40; die "ansible-playbook site.yml failed"; }
    sed -n '/PLAY RECAP/,$p' "$LOGS/ansible.log" | sed '/^$/d; s/^/    /'
    local f
    for f in "$OGRT" "$CONF" "$SLURM_SNIPPET"; do [ -e "$f" ] || die "the deployment did not create $f"; done
}

collector_start() {
    local pid
    if pid=$(pid_of collector); then
        echo "    collector runs already (pid $pid)"
        return 0
    fi
    local mark
    mark=$(wc -l 2>/dev/null <"$LOGS/collector.log" || echo 0)
    start collector head "$OGRT" server --config "$CONF"
    pid=$(cat "$RUN/collector.pid")
    if ! wait_for 30 collector_ready "$mark" "$pid"; then
        show_log "$LOGS/collector.log"
        die "the collector did not get ready within 30 s"
    fi
    echo "    collector listens on ${ADDR[head]}:$COLLECTOR_PORT (tcp, udp), database $DB"
}

# collector_ready LINES PID: "ogrt server ready" logged after line LINES; fails fast if PID died.
collector_ready() {
    [ -e "/proc/$2" ] || { show_log "$LOGS/collector.log"; die "the collector exited"; }
    tail -n "+$(($1 + 1))" "$LOGS/collector.log" | grep -q "ogrt server ready"
}

# ---------------------------------------------------------------------------------------------
# subcommands

all_running() {
    local name
    for name in "${DAEMONS[@]}"; do
        pid_of "$name" >/dev/null || return 1
    done
}

cmd_up() {
    require_root up
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
        && command -v munged >/dev/null \
        || die "Slurm or munge missing: install the Debian packages slurmctld slurmd slurm-client munge (make apt-deps)"
    [ -x "$VENV/bin/ansible-playbook" ] || die "no ansible-playbook in $VENV: run 'make venv' first"
    if [ -e "/run/netns/$(netns head)" ] && [ ! -f "$STATE/namespaces" ]; then
        die "namespace $(netns head) exists but not for $STATE: another cluster runs (set OGRT_CLUSTER_NS or use its OGRT_CLUSTER_DIR)"
    fi
    if all_running && nodes_idle; then
        say "the cluster in $STATE is up already: nothing to do ('down' then 'up' deploys anew)"
        return 0
    fi
    mkdir -p "$STATE" "$RUN" "$LOGS"
    chmod 0755 "$STATE"
    echo "$NS" >"$STATE/namespaces"
    say "network: hosts ${HOSTS[*]} in namespaces, bridge $BRIDGE"
    net_up
    say "user $JOB_USER"
    user_up
    say "munged (key in $STATE/munge)"
    munge_up
    # OGRT before Slurm: slurm.conf includes the Slurm hooks the deployment writes
    say "the preload library for the collector on head"
    library_up
    say "deploying OGRT with ansible-playbook site.yml into $ROOT"
    deploy
    say "Slurm: slurmctld on head, slurmd on node1 and node2 (config $SLURM_CONF)"
    slurm_up
    say "the collector on head"
    collector_start
    say "waiting for both nodes to be idle"
    wait_nodes_idle
    say "cluster up (state in $STATE)"
}

cmd_exec() {
    require_root exec
    [ $# -ge 1 ] || usage
    local host=$1 user=""; shift
    is_host "$host" || die "unknown host '$host' (hosts: ${HOSTS[*]})"
    while [ $# -gt 0 ]; do
        case $1 in
            --user) [ $# -ge 2 ] || usage; user=$2; shift 2 ;;
            --user=*) user=${1#--user=}; shift ;;
            --) shift; break ;;
            *) break ;;
        esac
    done
    [ $# -ge 1 ] || die "exec: no command given (exec HOST [--user NAME] -- CMD...)"
    have_netns "$host" || die "the cluster is not up (no namespace $(netns "$host")): run '$0 up'"
    if [ -n "$user" ]; then
        local home
        id "$user" >/dev/null 2>&1 || die "no user '$user'"
        home=$(getent passwd "$user" | cut -d: -f6)
        on "$host" env HOME="$home" USER="$user" LOGNAME="$user" \
            setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- "$@"
    else
        on "$host" "$@"
    fi
}

cmd_report() {
    [ -x "$OGRT" ] || die "no deployment in $ROOT: run '$0 up'"
    exec "$OGRT" report --config "$CONF" "$@"
}

cmd_collector() {
    require_root collector
    [ -x "$OGRT" ] || die "no deployment in $ROOT: run '$0 up'"
    case ${1:-} in
        stop) stop 60 collector ;;
        start) have_netns head || die "the cluster is not up"; collector_start ;;
        *) die "collector stop|start" ;;
    esac
}

cmd_paths() {
    printf '%s=%s\n' state "$STATE" work "$STATE/work" slurm_conf "$SLURM_CONF" root "$ROOT" \
        library "$LIB" modulefiles "$ROOT/opt/modulefiles" ogrt_conf "$CONF" database "$DB" \
        logs "$LOGS" job_user "$JOB_USER" slurm_snippet "$SLURM_SNIPPET" hook_log "$HOOK_LOG" \
        metrics "${ADDR[head]}:$METRICS_PORT" netns_prefix "$NS" bridge "$BRIDGE" \
        bridge_netns "$(netns "$NETNS_BRIDGE")"
}

cmd_status() {
    require_root status
    local name pid host up=0
    for name in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$name"); then
            printf '  %-13s pid %s\n' "$name" "$pid"
            up=$((up + 1))
        else
            printf '  %-13s not running\n' "$name"
        fi
    done
    for host in "${HOSTS[@]}" "$NETNS_BRIDGE"; do
        if have_netns "$host"; then
            printf '  namespace %s (%s)\n' "$(netns "$host")" "${ADDR[$host]:-bridge $BRIDGE}"
        fi
    done
    if pid_of slurmctld >/dev/null; then
        (on head sinfo -N) 2>&1 | sed 's/^/  /' || true
    fi
    [ "$up" = "${#DAEMONS[@]}" ]
}

# kill_namespace HOST: SIGTERM, then SIGKILL, to every process left in HOST's network namespace
# (job steps, slurmstepd): by pid, found with `ip netns pids`.
kill_namespace() {
    local ns pids signal i
    ns=$(netns "$1")
    [ -e "/run/netns/$ns" ] || return 0
    for signal in TERM KILL; do
        pids=$(ip netns pids "$ns")
        [ -n "$pids" ] || return 0
        echo "    left in $ns: $(echo $pids): SIG$signal"
        # shellcheck disable=SC2086
        kill -"$signal" $pids 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [ -z "$(ip netns pids "$ns")" ] && return 0
            sleep 0.1
        done
    done
    die "processes $(ip netns pids "$ns" | xargs) do not exit from $ns"
}

cmd_down() {
    require_root down
    if [ ! -f "$STATE/namespaces" ]; then
        local host
        for host in "${HOSTS[@]}" "$NETNS_BRIDGE"; do
            if [ -e "/run/netns/$(netns "$host")" ]; then die "namespace $(netns "$host") exists but $STATE has no cluster: it belongs to another cluster dir (OGRT_CLUSTER_DIR), or remove it with: ip netns del $(netns "$host")"; fi
        done
        rm -rf "$STATE"
        echo "nothing to stop: no cluster in $STATE"
        return 0
    fi
    say "stopping the cluster's processes (by pid)"
    # the collector flushes its records on SIGTERM; give it the longest
    stop 60 "${DAEMONS[@]}"
    local host
    for host in "${HOSTS[@]}" "$NETNS_BRIDGE"; do kill_namespace "$host"; done
    say "removing the namespaces and the bridge"
    for host in "${HOSTS[@]}" "$NETNS_BRIDGE"; do
        if [ -e "/run/netns/$(netns "$host")" ]; then
            ip netns del "$(netns "$host")"
            echo "    removed $(netns "$host")"
        fi
    done
    say "removing $STATE"
    rm -rf "$STATE"
}

main() {
    local cmd=${1:-}
    [ $# -gt 0 ] && shift
    # A cluster brought up with another namespace prefix keeps it.
    if [ -z "${OGRT_CLUSTER_NS:-}" ] && [ -f "$STATE/namespaces" ]; then NS=$(cat "$STATE/namespaces"); fi
    case $cmd in
        up) cmd_up "$@" ;;
        exec) cmd_exec "$@" ;;
        report) cmd_report "$@" ;;
        collector) cmd_collector "$@" ;;
        status) cmd_status "$@" ;;
        paths) cmd_paths ;;
        down) cmd_down "$@" ;;
        *) usage ;;
    esac
}

main "$@"
