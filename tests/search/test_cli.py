"""Bad input on the command line: one clear message, exit status 2, no traceback, and the
study and the working directory left exactly as they were."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from trainer.group import RULE
from trainer.techniques import REGISTRY

REGRESSIONS = Path(__file__).parents[1] / "regressions"


@pytest.fixture
def existing_study(tmp_path: Path) -> str:
    """A storage holding a study with one finished trial, which bad input must not touch."""
    url = f"sqlite:///{tmp_path / 'kept.db'}"
    study = optuna.create_study(study_name="kept", storage=url, directions=["maximize"])
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, values=[0.5]))
    return url


def trials_in(url: str) -> int:
    return len(optuna.load_study(study_name="kept", storage=url).trials)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD_INPUTS = {
    "unknown preset": (["run", "no_such_preset"], "unknown preset 'no_such_preset'; shipped"),
    "malformed space file": (["run", "{broken}"], "malformed YAML at line 3"),
    "unknown key": (["run", "{unknown_key}"], "unknown key(s) 'colour'"),
    "out-of-range value": (["run", "{out_of_range}"], "blurpool.size = 7: expected"),
    "unknown technique": (["run", "{unknown_technique}"], "unknown technique(s) 'dropout'"),
    "a network the images cannot take": (["run", "{unbuildable}"], "cannot take its 2x2 input map"),
    "missing data set": (
        ["run", "mnist_budget_1_5k", "--data-dir", "{empty}"],
        "--data-dir",
    ),
    "unopenable storage": (
        ["run", "quickstart", "--storage", "sqlite:////no/such/dir/x.db"],
        "cannot open storage 'sqlite:////no/such/dir/x.db'",
    ),
    "storage that is no URL": (
        ["run", "quickstart", "--storage", "notes.txt"],
        "accepted: an Optuna RDB URL",
    ),
    "unreachable Ray cluster": (
        ["run", "quickstart", "--address", "127.0.0.1:9"],
        "cannot reach the Ray cluster at '127.0.0.1:9'",
    ),
    "resume of an unknown study": (["resume", "ghost", "--storage", "{kept}"], "no study named"),
    "storage password": (
        ["export", "ghost", "--storage", "postgresql://user:secretpw@127.0.0.1:1/db"],
        "cannot open storage 'postgresql://user:***@127.0.0.1:1/db'",
    ),
    "a strict front without a front to choose": (
        ["export", "kept", "--storage", "{kept}", "--strict-front"],
        "--strict-front chooses the front --pareto keeps",
    ),
    "alias bomb": (["run", str(REGRESSIONS / "alias_bomb.yaml")], "over 10,000 values"),
    "data path walked": (["run", str(REGRESSIONS / "dataset_root.yaml")], "data.dataset = '/'"),
}

VALID = """name: ok
data: {dataset: digits}
model: {stages: [{channels: 8}]}
techniques: {blurpool: search}
"""


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_one_message_and_status_2(
    case: str, search, tmp_path: Path, existing_study: str
) -> None:
    args, message = BAD_INPUTS[case]
    files = {
        "broken": write(tmp_path, "broken.yaml", "name: x\ntechniques: [a, b\n"),
        "unknown_key": write(tmp_path, "k.yaml", VALID + "colour: red\n"),
        "out_of_range": write(
            tmp_path, "r.yaml", VALID.replace("blurpool: search", "blurpool: {size: 7}")
        ),
        "unknown_technique": write(
            tmp_path, "t.yaml", VALID.replace("blurpool: search", "dropout: search")
        ),
        "unbuildable": write(  # 8x8 digits: the third stage's blur would pad a 1x1 map
            tmp_path,
            "u.yaml",
            VALID.replace("[{channels: 8}]", "[{channels: 8}, {channels: 8}, {channels: 8}]"),
        ),
        "empty": str(tmp_path / "empty"),
        "kept": existing_study,
    }
    (tmp_path / "empty").mkdir()
    args = [a.format(**files) for a in args]
    if args[0] == "run":
        args += ["--study", "kept"] + ([] if "--storage" in args else ["--storage", existing_study])
    before = sorted(p.name for p in tmp_path.iterdir())

    result = search(*args)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1 and len(result.stderr.strip()) < 300
    assert "secretpw" not in result.stderr + result.stdout
    assert trials_in(existing_study) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/, no partial files


def test_list_and_techniques(search) -> None:
    listed = search("list")
    assert listed.returncode == 0
    assert "quickstart" in listed.stdout and "mnist_budget_1_5k" in listed.stdout
    catalogue = search("techniques")
    assert catalogue.returncode == 0
    for name, cls in REGISTRY.items():
        assert f"{name} ({cls.kind})" in catalogue.stdout
        for hyper in cls.hypers:
            assert f"{name}.{hyper.name}" in catalogue.stdout
    for field in ("warmup_fraction", "no_wd_bn_bias", "schedule"):  # the recipe's fields too
        assert f"train.{field}" in catalogue.stdout
    assert f"fused groups (--fuse): {RULE}" in catalogue.stdout


def test_ray_address_in_the_environment_is_the_address_default(search) -> None:
    """`$RAY_ADDRESS` (which Ray Jobs set) is joined as --address would be; --address wins."""
    env = {"RAY_ADDRESS": "127.0.0.1:9"}
    joined = search("run", "quickstart", "--trials", "1", env=env)
    assert joined.returncode == 2
    assert "cannot reach the Ray cluster at '127.0.0.1:9'" in joined.stderr
    given = search("run", "quickstart", "--trials", "1", "--address", "127.0.0.1:7", env=env)
    assert "cannot reach the Ray cluster at '127.0.0.1:7'" in given.stderr


def test_the_help_names_every_export_format() -> None:
    from search import cli, export

    top = cli.parser().format_help()
    line = next(x for x in top.splitlines() if x.strip().startswith("export"))
    assert "CSV, JSON or Parquet" in line
    assert all(fmt in line.lower() for fmt in export.FORMATS)
