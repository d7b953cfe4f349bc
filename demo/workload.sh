#!/usr/bin/env bash
# The demo's job: run under `module load ogrt` with a job id set (see demo/run.sh).
#   workload.sh DEMO_DIR HELLO_PROGRAM
# Deterministic: the same processes every run (the system's /usr/bin/python3 when there
# is one, so that no version-manager shims add processes).
set -u
here=$1
hello=$2
python=/usr/bin/python3
[ -x "$python" ] || python=python3

echo "  [job] a shell pipeline"
printf 'pear\napple\nfig\napple\n' | sort | uniq -c | sort -rn | head -n 2

echo "  [job] a Python script importing C extensions (_ssl, _sqlite3)"
"$python" "$here/c_extension.py"

echo "  [job] a stamped compiled program"
"$hello"

echo "  [job] a failing command"
ls /nonexistent/ogrt-demo 2>/dev/null
echo "  [job] (ls exited with status $?, as planned)"
exit 0
