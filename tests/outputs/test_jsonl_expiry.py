"""JSON lines archives expire with the real logrotate (README "Retention"): it renames the
file the daemon appends to, the daemon starts a new one (0640) at its next batch, and
`rotate N` removes the oldest archives. No record is lost across a rotation."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from tests.fixtures.server import end_msg, frame, start_msg

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"


@pytest.mark.skipif(not os.path.exists(LOGROTATE), reason="logrotate is not installed (`make test` installs it)")
def test_logrotate_expires_archives_while_the_daemon_writes(ogrt_server, tmp_path) -> None:
    srv = ogrt_server()
    path = srv.jsonl_path
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"""{path} {{
    rotate 2
    missingok
    notifempty
    nocreate
}}
""")
    sent: list[str] = []
    archives_seen = []
    for round_ in range(4):
        starts = [start_msg(pid=round_ * 100 + i) for i in range(25)]
        srv.send_tcp(b"".join(frame(12, s) + frame(13, end_msg(uuid=s.uuid)) for s in starts))
        sent += [s.uuid.hex() for s in starts]
        assert len(srv.records(50)) >= 50  # this round is in the current file
        r = subprocess.run([LOGROTATE, "-f", "-s", str(tmp_path / "state"), str(conf)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        archives_seen.append(sorted(p.name for p in path.parent.glob(path.name + ".*") if p.suffix != ".lock"))
    starts = [start_msg(pid=999)]
    srv.send_tcp(frame(12, starts[0]))
    assert len(srv.records(1)) == 1  # the daemon made a new file after the last rotation
    assert srv.stop() == 0
    assert stat.S_IMODE(os.stat(path).st_mode) & ~0o640 == 0
    # logrotate kept two archives (.1, .2): rounds 3 and 4; rounds 1 and 2 expired
    assert archives_seen[-1] == [path.name + ".1", path.name + ".2"]
    import json
    kept = [json.loads(x) for p in (path.with_name(path.name + ".2"), path.with_name(path.name + ".1"))
            for x in p.read_text().splitlines()]
    want = {u for u in sent[50:]}
    got = {r["id"].replace("-", "") for r in kept}
    assert got == want and len(kept) == 100  # each of rounds 3 and 4 whole, in its own archive
