"""Start-up imports only what the command needs: `--help` and an `--embeddings` evaluation load
none of the heavy optional packages (torchvision pulls torch._dynamo and takes seconds).

Each command runs in a fresh interpreter through a wrapper that runs the script as
``__main__`` and prints the top-level packages loaded, so what the pytest process itself has
imported cannot hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from utilities.embedding_files import write_embeddings

HEAVY = ("torchvision", "pretrainedmodels", "wandb", "matplotlib", "faiss", "sklearn")

# argv: script, flags...
WRAPPER = """
import json, runpy, sys
args = sys.argv[1:]
sys.path.insert(0, ".")
sys.argv = args
code = 0
try:
    runpy.run_path(args[0], run_name="__main__")
except SystemExit as stop:
    code = stop.code or 0
loaded = sorted({name.split(".")[0] for name, module in sys.modules.items() if module})
print(json.dumps({"code": code, "loaded": loaded}))
"""


def loaded_packages(*argv: str) -> set[str]:
    """Top-level packages loaded by running ``argv`` (script and flags); asserts exit status 0."""
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv], cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, result.stdout + result.stderr
    return set(report["loaded"])


@pytest.mark.parametrize("script", ["eval.py", "main.py"])
def test_help_imports_no_heavy_package(script):
    assert sorted(loaded_packages(script, "--help") & set(HEAVY)) == []


def test_embeddings_evaluation_imports_no_heavy_package(tmp_path):
    """R@1 and MAP@R come from the exact rank pass, which needs neither faiss nor sklearn."""
    rng = np.random.default_rng(0)
    path = tmp_path / "E.npz"
    arrays = {
        "embeddings": rng.normal(size=(40, 8)).astype(np.float32),
        "labels": np.repeat(np.arange(8), 5),
    }
    write_embeddings(path, arrays)
    flags = ["--embeddings", str(path), "--evaluation_metrics", "e_recall@1", "mAP_R"]
    loaded = loaded_packages("eval.py", *flags, "--device", "cpu")
    assert "torch" in loaded  # the evaluation ran
    assert sorted(loaded & set(HEAVY)) == []
