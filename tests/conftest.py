"""Shared pytest set-up: the repository root on sys.path, deterministic CPU threads, and the
killed-run helper of the resume tests."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module of small ops (``pytestmark =
    pytest.mark.usefixtures("one_thread")``): a second intra-op thread only adds synchronisation
    and spins on a loaded machine; restored afterwards for the other modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def straight_and_killed_runs(
    flags: list[str], tmp_path: pathlib.Path
) -> tuple[pathlib.Path, pathlib.Path]:
    """Run ``main.py flags`` (which name ``--savename run`` and two or more epochs on digits)
    once straight through and once killed with SIGKILL as soon as it reports epoch 1; returns
    the two run folders (the killed one holds the checkpoint of epoch 1)."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    command = [sys.executable, "main.py", *flags]
    subprocess.run(
        [*command, "--save_path", str(straight)], cwd=ROOT, check=True, capture_output=True
    )
    process = subprocess.Popen(
        [*command, "--save_path", str(killed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("epoch 1/"):
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL
    return straight / "digits" / "run", killed / "digits" / "run"
