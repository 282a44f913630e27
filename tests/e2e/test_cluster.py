"""A real two-node Ray cluster on this machine (`ray start --head` plus `ray start
--address`, one CPU each), and `search run --address` against it: trials land on both nodes,
the export names each trial's node, and when a node is stopped mid-trial the study goes on."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import optuna
import pandas as pd
import procs
import pytest
from optuna.trial import TrialState
from pg_server import free_port

pytestmark = pytest.mark.slow

NODE_TAG = "SEARCH_TEST_NODE"  # marks the second node's processes, to stop that node alone


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    second: str  # NODE_TAG value of the second node's processes
    temp: Path  # RAY_TMPDIR of its nodes


@contextlib.contextmanager
def two_nodes(second_prefix: tuple[str, ...] = ()) -> Iterator[Cluster]:
    """A head and a second node, one CPU each; `second_prefix` wraps the second's start."""
    tag = procs.new_tag()
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths are limited
    env = {
        **os.environ,
        procs.TAG: tag,
        "RAY_TMPDIR": temp,
        # Ray's token authentication, with one token every node and the driver share.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # that flag forbids joining nodes
    ray = str(Path(sys.executable).parent / "ray")
    port = free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    second = procs.new_tag()
    try:
        for command, extra in (
            ([ray, "start", "--head", "--port", str(port), "--include-dashboard", "false"], {}),
            ([*second_prefix, ray, "start", "--address", f"127.0.0.1:{port}"], {NODE_TAG: second}),
        ):
            subprocess.run(
                [*command, *common],
                env={**env, **extra},
                check=True,
                capture_output=True,
                timeout=300,
            )
        yield Cluster(f"127.0.0.1:{port}", env, second, Path(temp))
    finally:
        procs.kill_tagged(tag)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with two_nodes() as started:
        yield started


def running(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return []
    return study.get_trials(states=(TrialState.RUNNING,))


def test_trials_spread_over_two_nodes_and_survive_losing_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    run = [sys.executable, "-m", "search.cli", "run", "quickstart", "--study", "c"]
    run += ["--storage", url, "--address", cluster.address, "--parallel", "2", "--epochs", "2"]

    first = subprocess.run(
        [*run, "--trials", "4"],
        cwd=tmp_path,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    exported = subprocess.run(
        [sys.executable, "-m", "search.cli", "export", "c", "--storage", url],
        cwd=tmp_path,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    table = pd.read_csv(StringIO(exported.stdout))
    # Trained rows only: proposals over quickstart's smallest budget level never reach a node.
    table = table[(table["state"] == "COMPLETE") & table["duplicate_of"].isna()]
    assert table["node"].notna().all() and table["node_ip"].notna().all()
    nodes = set(table["node"])
    assert len(nodes) == 2, "the trials did not land on both nodes"

    # Continue to 8 trials and stop the second node while both nodes train.
    driver = subprocess.Popen(
        [*run, "--trials", "8"],
        cwd=tmp_path,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 600
    while len(running(url, "c")) < 2:
        assert time.monotonic() < deadline and driver.poll() is None, "no two trials at once"
        time.sleep(0.5)
    time.sleep(3)  # both are training now, one on each node
    during = {t.number for t in running(url, "c")}
    procs.kill_tagged(cluster.second, NODE_TAG)
    output, _ = driver.communicate(timeout=1500)
    assert driver.returncode == 0, output

    study = optuna.load_study(study_name="c", storage=url)
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    complete = [
        t for t in trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs
    ]
    assert len(complete) == 8, output
    for trial in trials:
        if trial.number in during:  # retried on the node left, or failed with why
            assert trial.state == TrialState.COMPLETE or trial.user_attrs["reason"], trial
    late = [t for t in complete if t.number > max(during)]
    assert late and len({t.user_attrs["node"] for t in late}) == 1, "a dead node trained"


def test_a_run_without_address_starts_its_own_ray_beside_a_running_cluster(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Ray's default address joins the last cluster `ray start` left on this machine (one
    not on loopback then refuses the driver); `search` without --address or $RAY_ADDRESS
    starts its own Ray instead, as its help says: a session of its own beside the cluster's."""

    def sessions() -> set[str]:
        return {p.name for p in (cluster.temp / "ray").glob("session_2*")}

    before = sessions()
    env = {k: v for k, v in cluster.env.items() if k != "RAY_ADDRESS"}
    url = f"sqlite:///{tmp_path / 's.db'}"
    command = [sys.executable, "-m", "search.cli", "run", "quickstart", "--study", "l"]
    run = subprocess.run(
        [*command, "--storage", url, "--trials", "1", "--epochs", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(sessions() - before) == 1, "the run joined the cluster"


def test_a_node_without_the_shared_weights_directory_fails_its_trial_saying_so(
    tmp_path: Path,
) -> None:
    """The second node runs in its own mount namespace, where the driver's runs/ directory
    is an empty tmpfs: a node that does not share the weights directory."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a mount namespace here (unshare -m needs root)")
    hidden = tmp_path / "runs"
    hidden.mkdir()
    prefix = ("unshare", "-m", "sh", "-c", f'mount -t tmpfs none "{hidden}" && exec "$@"', "sh")
    url = f"sqlite:///{tmp_path / 's.db'}"
    with two_nodes(prefix) as cluster:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "search.cli",
                "run",
                "quickstart",
                "--study",
                "n",
                "--storage",
                url,
                "--address",
                cluster.address,
                "--parallel",
                "2",
                "--epochs",
                "1",
                "--trials",
                "2",
            ],
            cwd=tmp_path,
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    trials = optuna.load_study(study_name="n", storage=url).get_trials()
    # Proposals over quickstart's smallest budget level are rejected before training.
    failed = [
        t
        for t in trials
        if t.state == TrialState.FAIL and t.user_attrs.get("failure") != "over_budget"
    ]
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 1, run.stdout
    assert len(failed) == 1 and "is not shared with node" in failed[0].user_attrs["reason"]
    done = next(t for t in trials if t.state == TrialState.COMPLETE)
    assert done.user_attrs["node"] != failed[0].user_attrs["node"]  # one trial on each node
