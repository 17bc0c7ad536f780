"""Optional Weights & Biases logging (``--log_online``); offline mode when no key is configured."""

from __future__ import annotations

import argparse
import netrc
import os
import pathlib
from typing import Any

INIT_TIMEOUT = 30  # seconds wandb.init may wait for the server before we log offline


def api_key_configured() -> bool:
    """A W&B API key in ``WANDB_API_KEY`` or in ``~/.netrc`` (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_key_configured(opt: argparse.Namespace) -> bool:
    return bool(opt.wandb_key) or api_key_configured()


class OnlineLogger:
    """Logs each epoch's values to W&B when ``--log_online``; does nothing otherwise."""

    def __init__(self, opt: argparse.Namespace, run_dir: pathlib.Path, resume_id: str | None):
        self.run = None
        self.run_id: str | None = None
        if not opt.log_online:
            return
        import wandb

        if opt.wandb_key:
            os.environ["WANDB_API_KEY"] = opt.wandb_key
        mode = "online" if wandb_key_configured(opt) else "offline"
        settings = {
            "project": opt.project,
            "group": opt.group,
            "name": run_dir.name,
            "dir": str(run_dir),
            "config": {k: v for k, v in vars(opt).items() if k != "wandb_key"},
            "id": resume_id,
            "resume": "allow" if resume_id else None,
        }
        try:
            self.run = wandb.init(
                **settings, mode=mode, settings=wandb.Settings(init_timeout=INIT_TIMEOUT)
            )
        except Exception as error:  # no network, server down, bad key: log locally instead
            if mode == "offline":
                raise
            reason = " ".join(str(error).split())[:160]
            print(
                f"W&B: cannot reach the server ({type(error).__name__}: {reason}); logging "
                f"offline under {run_dir / 'wandb'} (upload later with wandb sync)"
            )
            mode = "offline"
            self.run = wandb.init(**settings, mode=mode)
        self.run_id = self.run.id
        print(f"W&B logging {mode} (run {self.run_id})")

    def log(self, values: dict[str, Any], epoch: int) -> None:
        if self.run is not None:
            self.run.log(values, step=epoch)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
