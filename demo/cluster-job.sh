#!/bin/bash
#SBATCH --job-name=ogrt-demo
#SBATCH --nodes=2
#SBATCH --ntasks=4
# The job of `make cluster` (submitted by demo/cluster-demo.sh as ogrtuser from head):
#   cluster-job.sh WORK_DIR
# No `module load`: the TaskProlog of roles/ogrt_slurm gives every task (this script too)
# the library in LD_PRELOAD and OGRT_ACTIVE=1.
set -u
work=$1
echo "[job $SLURM_JOB_ID on $(hostname)] from the TaskProlog: LD_PRELOAD=$LD_PRELOAD OGRT_ACTIVE=$OGRT_ACTIVE"

echo "[step 0] srun -N2 -n4 hello: four ranks on two nodes"
srun -N2 -n4 --label "$work/hello"

echo "[step 1] a Python step importing C extensions (_ssl, _sqlite3)"
srun -N1 -n1 /usr/bin/python3 "$work/c_extension.py"

echo "[step 2] a failing step"
srun -N1 -n1 ls /nonexistent/ogrt-demo
echo "[job] (the step exited with status $?, as planned)"
exit 0
