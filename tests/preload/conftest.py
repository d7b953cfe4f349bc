"""Helpers for the preload library's own tests: compile the C test programs in c/."""
from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

C_DIR = Path(__file__).parent / "c"
PRELOAD_DIR = Path(__file__).resolve().parents[2] / "preload"


@pytest.fixture(scope="session")
def c_program(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`c_program("exit_status", *extra_gcc_args, cc=("gcc",)) -> Path` of tests/preload/c/<name>.c
    built once (cc: the compiler command, e.g. ("musl-gcc",) or ("gcc", "-m32"))."""
    out = tmp_path_factory.mktemp("preload-cprogs")
    cache: dict[tuple[object, ...], Path] = {}
    lock = threading.Lock()

    def build(name: str, *extra: str, sources: tuple[str, ...] = (), cc: tuple[str, ...] = ("gcc",)) -> Path:
        key = (name, extra, sources, cc)
        with lock:
            if key not in cache:
                exe = out / f"{name}{len(cache)}"
                cmd = [*cc, "-O1", "-Wall", "-Werror=implicit-function-declaration", "-o", str(exe), str(C_DIR / f"{name}.c"), *sources, *extra]
                subprocess.run(cmd, check=True, capture_output=True, timeout=120)
                cache[key] = exe
            return cache[key]

    return build


@pytest.fixture(scope="session")
def tiny_libs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], list[Path]]:
    """`tiny_libs(n)` -> n distinct shared objects (copies of one tiny .so: distinct inodes)."""
    out = tmp_path_factory.mktemp("preload-tinylibs")
    base = out / "base.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(base), str(C_DIR / "tiny_lib.c")],
                   check=True, capture_output=True, timeout=120)
    made: list[Path] = []

    def get(n: int) -> list[Path]:
        while len(made) < n:
            p = out / f"libogrttiny{len(made):04d}.so"
            shutil.copyfile(base, p)
            made.append(p)
        return made[:n]

    return get
