"""Records are private behind a sink too: a real `ogrt sink` started under umask 000 creates
its outputs' directories 0750 and files 0640 or stricter (SQLite's -wal and -shm, the jsonl
rotations too) and runs with 027 added to its umask (ogrt/filemodes.py's restrict_umask, as the
daemon does)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.outputs.helpers import wait_for
from tests.scaleout.test_nats import make_pairs, nats_output


def _umask(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)


def test_sink_under_umask_000_makes_nothing_readable_by_others(ogrt_server, ogrt_sink, lone_nats,
                                                               tmp_path) -> None:
    lone = lone_nats()
    coll = ogrt_server(nats_output(lone.urls, replicas=1, batch_records=20), jsonl=False)
    top = tmp_path / "new"  # none of it exists yet: the sink creates every level
    out = top / "deeper" / "out"
    outputs = {"j": {"type": "jsonl", "path": str(out / "records.jsonl"), "rotate_bytes": 4000},
               "db": {"type": "sqlite", "path": str(out / "sink.sqlite")}}
    old = os.umask(0o000)  # the sink inherits it
    try:
        sink = ogrt_sink(lone.urls, outputs=outputs, source={"batch": 20})
    finally:
        os.umask(old)
    # the process itself runs with 027 added to the umask it inherited, so whatever a library
    # creates through the umask (no output of today does: they pass 0640/0750) stays private too
    assert _umask(sink.proc.pid) & 0o027 == 0o027
    pairs, _ = make_pairs(100)
    coll.send_tcp(b"".join(pairs))
    wait_for(lambda: sink.metric("ogrt_sink_acked_total") >= 200, 60, "every record acked by the sink")
    wait_for(lambda: (out / "sink.sqlite-wal").exists(), 30, "the SQLite WAL")
    made = [top, top / "deeper"]
    for root, dirs, files in os.walk(top):  # while running: -wal, -shm
        made += [Path(root, n) for n in dirs + files]
    assert sink.stop() == 0 and coll.stop() == 0
    names = {p.name for p in made}
    assert {"out", "records.jsonl", "sink.sqlite", "sink.sqlite-wal", "sink.sqlite-shm"} <= names, names
    assert any(n.startswith("records.jsonl.") for n in names), f"no jsonl rotation: {sorted(names)}"
    wide = []
    for p in made:
        try:
            st = os.lstat(p)
        except FileNotFoundError:  # removed meanwhile (the WAL at close)
            continue
        limit = 0o750 if stat.S_ISDIR(st.st_mode) else 0o640
        if stat.S_IMODE(st.st_mode) & ~limit:
            wide.append(f"{p} {stat.S_IMODE(st.st_mode):04o}")
    assert not wide, f"wider than 0750/0640 under umask 000: {wide}"
