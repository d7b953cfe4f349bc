#!/usr/bin/env bash
# The demo's job: run under `module load ogrt` with a job id set (see demo/run.sh).
#   workload.sh HELLO_PROGRAM
# Deterministic: the same processes every run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
hello=$1

echo "  [job] a shell pipeline"
printf 'pear\napple\nfig\napple\n' | sort | uniq -c | sort -rn | head -n 2

echo "  [job] a Python script importing C extensions (_ssl, _sqlite3)"
python3 "$here/c_extension.py"

echo "  [job] a stamped compiled program"
"$hello"

echo "  [job] a failing command"
ls /nonexistent/ogrt-demo 2>/dev/null
echo "  [job] (ls exited with status $?, as planned)"
exit 0
