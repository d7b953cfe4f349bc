"""The executable path of the start record is what readlink("/proc/self/exe") says, however the
program was named to execve: through symlinks (absolute and relative, to files and to
directories), relative paths with "." and "..", a path longer than the library's small buffers,
an argument equal to the program's own path, and a "#!" script (the interpreter is recorded).
The library resolves the execve path itself (cheaper than procfs) only when it is sure to give
the same answer; these cases pin that down."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.preload import PROCESS_START, FrameReceiver, preload_env


def recorded_exe(receiver: FrameReceiver, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> bytes:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc
    msgs = receiver.messages(2, timeout=10)
    assert receiver.errors == []
    starts = [m for t, m in msgs if t == PROCESS_START]
    assert len(starts) == 1, msgs
    receiver.clear()
    return bytes(starts[0].exe)


@pytest.fixture
def tree(c_program: Callable[..., Path], tmp_path: Path) -> Path:
    """real/bin/prog; dirlink -> real/bin (relative); abslink -> <abs>/dirlink/prog;
    rel/hop -> ../dirlink/prog; chain -> rel/hop."""
    prog = c_program("exit_status")
    (tmp_path / "real" / "bin").mkdir(parents=True)
    (tmp_path / "real" / "bin" / "prog").write_bytes(prog.read_bytes())
    (tmp_path / "real" / "bin" / "prog").chmod(0o755)
    (tmp_path / "dirlink").symlink_to("real/bin")
    (tmp_path / "abslink").symlink_to(tmp_path / "dirlink" / "prog")
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "hop").symlink_to("../dirlink/prog")
    (tmp_path / "chain").symlink_to("rel/hop")
    return tmp_path


@pytest.mark.parametrize("how", ["abslink", "chain", "./rel/../chain", "dirlink/./prog", "rel/hop",
                                 "real/bin/prog", "own-path-as-argument"])
def test_exe_resolved_like_procfs(preload_lib: Path, frame_receiver: FrameReceiver, tree: Path, how: str) -> None:
    env = preload_env(preload_lib, frame_receiver.port)
    real = os.fsencode(os.path.realpath(tree / "real" / "bin" / "prog"))
    if how == "own-path-as-argument":  # argv[1] == the execve path: looks interpreted, procfs decides
        path = str(tree / "chain")
        assert recorded_exe(frame_receiver, [path, path], env) == real
    elif how.startswith("."):
        assert recorded_exe(frame_receiver, [how], env, cwd=tree) == real
    else:
        assert recorded_exe(frame_receiver, [str(tree / how)], env) == real
        assert recorded_exe(frame_receiver, ["./" + how], env, cwd=tree) == real


def test_exe_of_long_path(preload_lib: Path, frame_receiver: FrameReceiver, tree: Path) -> None:
    deep = tree
    for i in range(16):
        deep = deep / f"directory-with-a-long-name-number-{i:02d}"
    deep.mkdir(parents=True)
    (deep / "link").symlink_to(tree / "chain")
    (deep / "prog").write_bytes((tree / "real" / "bin" / "prog").read_bytes())
    (deep / "prog").chmod(0o755)
    assert len(str(deep / "link")) > 512
    env = preload_env(preload_lib, frame_receiver.port)
    assert recorded_exe(frame_receiver, [str(deep / "link")], env) == os.fsencode(
        os.path.realpath(tree / "real" / "bin" / "prog"))
    assert recorded_exe(frame_receiver, [str(deep / "prog")], env) == os.fsencode(os.path.realpath(deep / "prog"))


def test_exe_of_script_is_interpreter(preload_lib: Path, frame_receiver: FrameReceiver, tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    (tmp_path / "scriptlink").symlink_to(script)
    env = preload_env(preload_lib, frame_receiver.port)
    assert recorded_exe(frame_receiver, [str(tmp_path / "scriptlink")], env) == os.fsencode(
        os.path.realpath("/bin/sh"))
