#!/usr/bin/env bash
# `make cluster`: the virtual cluster of demo/cluster.sh, one job on it, its reports, and down.
#
#   1. demo/cluster.sh up: namespaces head/node1/node2, munged, slurmctld, two slurmd, the
#      preload library and `ansible-playbook site.yml` into the cluster's private root, the
#      collector on head (10.77.0.1);
#   2. a stamped program (ogrt-cc) and the demo's Python script into the job user's work dir;
#   3. `sbatch --wait demo/cluster-job.sh` as ogrtuser on head: srun -N2 -n4 of the program, a
#      Python step importing C extensions, a failing step, tracked without `module load`
#      (the TaskProlog of roles/ogrt_slurm), the job's start and end records sent by Slurm's
#      controller hooks;
#   4. the collector stopped with SIGTERM (it flushes every record), then `ogrt report`:
#      the job, its process tree, its executables;
#   5. demo/cluster.sh down, also when a step above failed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=$REPO/demo/cluster.sh

step() { printf '\n==> %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "cluster-demo.sh: must run as root (see demo/cluster.sh)" >&2; exit 1; }
trap 'rc=$?; step "demo/cluster.sh down"; "$CLUSTER" down || rc=1; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
step "demo/cluster.sh up"
"$CLUSTER" up

declare -A path
while IFS='=' read -r name value; do path[$name]=$value; done < <("$CLUSTER" paths)
work=${path[work]}
user=${path[job_user]}

step "a stamped program (ogrt-cc) and the Python script into $work"
"${path[root]}/opt/ogrt/preload/bin/ogrt-cc" gcc -O2 -o "$work/hello" "$REPO/demo/hello.c"
cp "$REPO/demo/c_extension.py" "$REPO/demo/cluster-job.sh" "$work/"
chown "$user:" "$work"/*

step "sbatch --wait cluster-job.sh as $user on head"
job=$("$CLUSTER" exec head --user "$user" -- \
    sbatch --parsable --wait --chdir="$work" --output="$work/job-%j.out" \
    "$work/cluster-job.sh" "$work") || {
    cat "$work"/job-*.out 2>/dev/null; echo "the job failed" >&2; exit 1; }
job=${job%%;*}
echo "    job $job finished; its output:"
sed 's/^/    | /' "$work/job-$job.out"

step "the job's records from Slurm's controller hooks (${path[hook_log]})"
# the end records are sent right after the job ends (EpilogSlurmctld, jobcomp/script)
for _ in $(seq 100); do
    [ "$(grep -c "job-event end: job $job " "${path[hook_log]}" 2>/dev/null)" -ge 2 ] && break
    sleep 0.2
done
grep " job $job " "${path[hook_log]}" | sed 's/^/    | /' || true

step "stopping the collector (SIGTERM: it flushes every record)"
"$CLUSTER" collector stop

step "ogrt report jobs --job $job    (the job record: state, exit code, nodes, elapsed)"
"$CLUSTER" report jobs --job "$job"
step "ogrt report job $job    (the process tree of the job, per node, step and rank)"
"$CLUSTER" report job "$job"
step "ogrt report executables --job $job"
"$CLUSTER" report executables --job "$job"
step "ogrt report libraries --path _ssl --job $job    (the C extension python dlopen'ed)"
"$CLUSTER" report libraries --path _ssl --job "$job"
echo
echo "up, job and reports took $((SECONDS - start)) s"
