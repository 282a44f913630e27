"""Security defaults: a Ray that `search` starts listens on loopback only and ends with it;
saved weights are loaded without running code."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import procs
import pytest
import torch
from optuna.trial import TrialState

from search import export
from search import study as studies
from search.storage import open_storage
from search.study import StudyConfig
from spaces import load


def listening(pids: list[int]) -> set[str]:
    """The local addresses that processes `pids` listen on (TCP, IPv4 and IPv6)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hexaddr = local.split(":")[0]
            raw = bytes.fromhex(hexaddr)
            # /proc writes addresses as 32-bit words in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(raw)))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


@pytest.mark.slow
def test_a_local_ray_listens_on_loopback_only_and_ends_with_search(tmp_path: Path) -> None:
    tag = procs.new_tag()
    url = f"sqlite:///{tmp_path / 's.db'}"
    env = {**os.environ, procs.TAG: tag, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rs", dir="/tmp")}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    command = [sys.executable, "-m", "search.cli", "run", "quickstart", "--study", "sec"]
    command += ["--storage", url, "--trials", "2", "--epochs", "1", "--parallel", "2"]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 600
    addresses: set[str] = set()
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name="sec", storage=url)
            if study.get_trials(states=(TrialState.RUNNING,)):
                addresses = listening(procs.tagged(tag))
                break
        except KeyError:
            pass
        time.sleep(0.5)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output
    assert addresses, "Ray's servers were not seen listening"
    assert all(is_loopback(a) for a in addresses), addresses
    deadline = time.monotonic() + 60
    while procs.tagged(tag) and time.monotonic() < deadline:
        time.sleep(1)
    assert not procs.tagged(tag), procs.describe(procs.tagged(tag))


class Payload:
    """A pickle that runs code when loaded: what a tampered weights file could hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_weights_are_loaded_without_running_their_code(tmp_path: Path) -> None:
    from trainer.data import load_dataset, make_splits

    space = load("quickstart")
    config = StudyConfig(space.source, 1, 0, None, 1, str(tmp_path / "weights"))
    study = studies.create_or_load(
        open_storage(f"sqlite:///{tmp_path / 's.db'}"), "w", space, config
    )
    trial = study.ask()
    space.suggest(trial, seed=0)
    study.tell(trial, [0.5, 1990, 0.3])
    path = tmp_path / "weights" / "w" / f"trial_{trial.number}.pt"
    path.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"weight": Payload(marker)}, path)
    splits = make_splits(load_dataset("digits", None), val_fraction=0.2, seed=0)
    with pytest.raises(Exception, match=r"[Ww]eights only load failed|Unsupported"):
        export.test_accuracy(study.trials[trial.number], config, splits, "w")
    assert not marker.exists()
