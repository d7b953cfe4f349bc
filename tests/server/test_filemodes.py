"""Records are private: whatever the umask, a real `ogrt server` creates nothing readable by
others (directories 0750, files 0640 or stricter), and reports what exists wider."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.fixtures.server import end_msg, frame, start_msg
from tests.outputs.helpers import LineListener, wait_for


def _spooled(srv) -> float:  # type: ignore[no-untyped-def]
    return sum(v for k, v in srv.metrics().items()
               if k.startswith("ogrt_output_spool_depth{") and '"tcp"' in k)


def _start_under_umask(ogrt_server, umask: int, **kw):  # type: ignore[no-untyped-def]
    old = os.umask(umask)  # the daemon inherits it
    try:
        return ogrt_server(**kw)
    finally:
        os.umask(old)


@pytest.mark.parametrize("umask,workers", [(0o000, 1), (0o022, 2)])
def test_nothing_the_daemon_makes_is_readable_by_others(ogrt_server, tmp_path, umask, workers) -> None:
    # a dead json_tcp peer: its records go to spool segments, cursors and all
    probe = LineListener()
    probe.start()
    dead_port = probe.port
    probe.stop()
    state = tmp_path / "new" / "deeper" / "state"  # none of it exists yet
    conf = (f'[server]\nstate_dir = "{state}"\n'
            f'[outputs.jsonl]\npath = "{state}/records.jsonl"\nrotate_bytes = 4000\n'
            '[outputs.db]\ntype = "sqlite"\nbatch_records = 50\nflush_interval = 0.05\n'
            f'[outputs.tcp]\ntype = "json_tcp"\nhost = "127.0.0.1"\nport = {dead_port}\n'
            'batch_records = 20\nflush_interval = 0.05\nreconnect_max_seconds = 0.5\n')
    srv = _start_under_umask(ogrt_server, umask, config_toml=conf, workers=workers)
    for _ in range(3):
        starts = [start_msg(pid=i) for i in range(40)]
        srv.send_tcp(b"".join(frame(12, s) + frame(13, end_msg(uuid=s.uuid)) for s in starts))
    wait_for(lambda: _spooled(srv) >= 240, timeout=30, what="records spooled for the dead peer")
    wait_for(lambda: len(list(state.glob("records.jsonl.*"))) >= 2, what="jsonl rotations")
    wait_for(lambda: (state / "db.sqlite-wal").exists(), what="the SQLite WAL")
    made = [state.parent.parent, state.parent, state]
    for top, dirs, files in os.walk(state):  # while running: -wal, -shm, spool segments
        made += [Path(top, n) for n in dirs + files]
    assert srv.stop() == 0
    for top, dirs, files in os.walk(state):  # after: cursors written at shutdown
        made += [Path(top, n) for n in dirs + files]
    kinds = {p.name.split(".")[-1] for p in made} | {p.name for p in made}
    for want in ("sqlite", "sqlite-wal", "sqlite-shm", "lock", "spool", "cursor", "jsonl"):
        assert want in kinds, f"no {want} file was made: {sorted(kinds)}"
    wide = []
    for p in made:
        try:
            st = os.lstat(p)
        except FileNotFoundError:  # removed meanwhile (e.g. a replayed segment)
            continue
        limit = 0o750 if stat.S_ISDIR(st.st_mode) else 0o640
        if stat.S_IMODE(st.st_mode) & ~limit:
            wide.append(f"{p} {stat.S_IMODE(st.st_mode):04o}")
    assert not wide, f"umask {umask:03o}: wider than 0750/0640: {wide}"
    assert "has mode" not in srv.stderr_text()  # everything was new: nothing to report


def test_existing_wide_modes_are_reported_once_and_left_alone(ogrt_server, tmp_path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o755)
    db = state / "ogrt.sqlite"
    db.touch()
    os.chmod(db, 0o644)
    conf = f'[server]\nstate_dir = "{state}"\n[outputs.default]\ntype = "sqlite"\n'
    srv = _start_under_umask(ogrt_server, 0o022, config_toml=conf)
    srv.send_tcp(frame(12, start_msg()))
    assert srv.stop() == 0
    text = srv.stderr_text()
    assert text.count(f"directory {state} has mode 0755") == 1, text
    assert text.count(f"file {db} has mode 0644") == 1, text
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o755  # reported, not changed
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o644
