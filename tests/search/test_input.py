"""Hardened input: every bad space file, argument and storage URL costs one line under 300
characters and exit status 2, with no traceback, no password and nothing written.

Each file in tests/regressions/ is one signature that once crashed, hung or was accepted;
the command runs in-process (the real `search.cli.main`), so any other exception fails the
test with its traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest

from search import cli
from search import study as studies
from search.errors import mask_url
from search.storage import open_storage
from search.study import StudyConfig
from spaces import load
from trainer.data import DataError
from trainer.data.arrays import empty_images

REGRESSIONS = Path(__file__).parents[1] / "regressions"

# file -> what its one-line message must say
EXPECTED = {
    # crashes
    "not_utf8.yaml": "not UTF-8 text (byte 0xff at offset 11)",
    "utf16.yaml": "not UTF-8 text (byte 0xff at offset 0)",
    "unhashable_objectives.yaml": "search.objectives = [['accuracy']]: expected distinct names",
    "unhashable_baseline.yaml": "search.baseline = [['gap']]: expected distinct names",
    "int_tag.yaml": "line 5, column 17: cannot read 'abc' as int",
    "float_tag.yaml": "line 5, column 13: cannot read 'abc' as float",
    "long_int.yaml": "line 5, column 17: cannot read '99999",
    "deep_nesting.yaml": "nested deeper than 32 levels",
    "huge_resize.yaml": "data.resize = [1000000000, 1000000000]: expected [height, width]",
    "dataset_root.yaml": "data.dataset = '/': /: no train/ or test/ subfolder",
    "dataset_home.yaml": "data.dataset = '~':",
    # hangs
    "alias_bomb.yaml": "over 10,000 values (counting what aliases repeat)",
    # accepted, but should not be
    "nan_lr.yaml": "train.lr = nan: expected a finite number",
    "nan_momentum.yaml": "train.momentum = nan: expected a finite number",
    "budget_one.yaml": "budget.params = 1: the baseline configuration cannot fit it",
    "budget_huge.yaml": "budget.params = 1000000000000000000000000000000: expected a value in",
    "budget_float.yaml": "budget.params = 1e+30: expected int",
    "name_empty.yaml": "name = '': expected 1-100 characters A-Z a-z 0-9 . _ -",
    "name_slash.yaml": "name = 'a/b': expected 1-100 characters",
    "name_dotdot.yaml": "name = '../../escape': expected",
    "name_long.yaml": "name = 'nnnnnnnnnnnnnnnnn...nnnnnnnnnnnnnnnnnn': expected",
    "name_surrogate.yaml": "name = '\\ud800': expected",
    "duplicate_keys.yaml": "line 6, column 1: duplicate key 'train'",
    "log_low_zero.yaml": "expected low > 0 on a log scale",
    "resize_bools.yaml": "data.resize = [True, True]: expected [height, width]",
    # unclear messages
    "on_key.yaml": "unknown key(s) True (a bare on/yes/true) in the top level; accepted: name",
    "gap_zero.yaml": "techniques.gap = 0: expected one of search, on, off, or a mapping",
}


@pytest.fixture
def cli_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """`search ARGS` in-process from an empty folder: (exit status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # `~` is a small, empty folder
    (tmp_path / "home").mkdir(exist_ok=True)

    def run(*args: str) -> tuple[int, str, str]:
        try:
            status = cli.main(list(args))
        except SystemExit as exit_:  # argparse
            status = exit_.code
        out, err = capsys.readouterr()
        return status, out, err

    return run


def assert_refused(result: tuple[int, str, str], expected: str, folder: Path) -> None:
    status, out, err = result
    assert status == 2, err
    assert "Traceback" not in out + err
    assert len(err.splitlines()) == 1 and len(err.rstrip("\n")) < 300, err
    assert expected in err, err
    assert sorted(p.name for p in folder.iterdir()) == ["home"]  # no runs/, no partial file


def test_every_regression_file_has_its_expectation() -> None:
    assert set(EXPECTED) | {"lr_exponent.yaml"} == {p.name for p in REGRESSIONS.iterdir()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_regression_file_is_refused_in_one_line(name: str, cli_run, tmp_path: Path) -> None:
    assert_refused(cli_run("run", str(REGRESSIONS / name)), EXPECTED[name], tmp_path)


def test_exponent_floats_read_as_yaml_1_2_does() -> None:
    train = load(str(REGRESSIONS / "lr_exponent.yaml")).train
    assert (train.lr, train.weight_decay) == (1e-3, 5e-4)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("big", "is over 1,000,000 bytes"),
        ("stages", "over 10,000 values"),
        ("directory", "is a directory, not a .yaml file"),
        ("/dev/null", "is not a regular file"),
        ("missing", "does not exist"),
    ],
)
def test_unusable_space_files(content: str, expected: str, cli_run, tmp_path: Path) -> None:
    work = tmp_path / "home"
    path = work / "space.yaml"
    if content == "big":  # a 2 MB file, refused before it is parsed
        path.write_text("description: " + "x" * 2_000_000 + "\n")
    elif content == "stages":
        path.write_text(
            "data: {dataset: digits}\ntechniques: {}\nmodel:\n  stages:\n"
            + "  - {channels: 8}\n" * 20_000
        )
    elif content == "directory":
        path.mkdir()
    elif content == "/dev/null":
        path = Path("/dev/null")
    before = sorted(p.name for p in work.iterdir())
    assert_refused(cli_run("run", str(path)), expected, tmp_path)
    assert sorted(p.name for p in work.iterdir()) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--study", "../../escape"], "argument --study: study name = '../../escape': expected"),
        (["--study", ""], "study name = '': expected"),
        (["--study", "x" * 5000], "expected 1-100 characters"),
        (["--seed", "-1"], "argument --seed: '-1': expected an integer in [0, 4294967295]"),
        (["--seed", "1e99"], "argument --seed"),
        (["--parallel", "0"], "argument --parallel: '0': expected an integer in [1, 1024]"),
        (["--epochs", "nan"], "argument --epochs"),
        (["--gpus-per-trial", "nan"], "expected a fraction of a GPU in [0, 1]"),
        (["--fuse", "on"], "argument --fuse: 'on': expected auto, off or a number of trials"),
        (["--fuse", "0"], "argument --fuse: '0': expected auto, off or a number of trials"),
    ],
)
def test_bad_arguments(args: list[str], expected: str, cli_run, tmp_path: Path) -> None:
    assert_refused(cli_run("run", "quickstart", *args), expected, tmp_path)


SECRET = "secretpw"


@pytest.mark.parametrize("command", ["run quickstart", "resume ghost", "export ghost"])
@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://user:{SECRET}@127.0.0.1:1/db",
        f"mysql://user:{SECRET}@127.0.0.1:1/db",
        f"postgresql://127.0.0.1:1/db?user=u&password={SECRET}",
    ],
)
def test_storage_password_is_masked(command: str, url: str, cli_run, tmp_path: Path) -> None:
    status, out, err = cli_run(*command.split(), "--storage", url)
    assert status == 2 and SECRET not in out + err and "***" in err
    assert_refused((status, out, err), "cannot open storage", tmp_path)


def test_mask_url() -> None:
    assert mask_url("postgresql://user:secretpw@host/db") == "postgresql://user:***@host/db"
    assert (
        mask_url("x 'mysql+pymysql://u:p@ss:w@h:3306/d' y")
        == "x 'mysql+pymysql://u:***@h:3306/d' y"
    )
    assert mask_url("sqlite:///runs/studies.db") == "sqlite:///runs/studies.db"
    assert mask_url("postgresql://user@host/db") == "postgresql://user@host/db"
    assert mask_url("postgresql://h/db?password=x&a=1") == "postgresql://h/db?password=***&a=1"


@pytest.mark.parametrize("command", ["resume", "export"])
def test_read_only_commands_create_nothing(command: str, cli_run, tmp_path: Path) -> None:
    assert_refused(
        cli_run(command, "ghost"), "no study storage 'sqlite:///runs/studies.db'", tmp_path
    )
    journal = tmp_path / "studies.log"
    assert_refused(cli_run(command, "ghost", "--storage", str(journal)), "does not exist", tmp_path)


@pytest.fixture
def queued_only(tmp_path: Path) -> str:
    """A storage whose study holds only its queued baseline trial."""
    url = f"sqlite:///{tmp_path / 'home' / 'q.db'}"
    (tmp_path / "home").mkdir(exist_ok=True)
    space = load("quickstart")
    config = StudyConfig(space.source, 2, 0, None, None, str(tmp_path / "weights"))
    studies.create_or_load(open_storage(url), "q", space, config)
    return url


def test_export_of_a_study_with_only_its_queued_baseline(queued_only: str, cli_run) -> None:
    status, out, err = cli_run("export", "q", "--storage", queued_only)
    assert status == 0
    assert "has no finished trials yet" in err
    assert out.splitlines()[1].startswith("0,WAITING,")


@pytest.mark.parametrize(
    ("output", "expected"),
    [("missing/out.csv", "directory 'missing' does not exist"), (".", "is a directory")],
)
def test_export_output_must_be_a_file_in_a_folder(
    output: str, expected: str, queued_only: str, cli_run, tmp_path: Path
) -> None:
    before = sorted(os.listdir(tmp_path / "home"))
    assert_refused(
        cli_run("export", "q", "--storage", queued_only, "-o", output), expected, tmp_path
    )
    assert sorted(os.listdir(tmp_path / "home")) == before
    assert not list(tmp_path.rglob("*.partial"))


def test_a_stored_study_keeps_its_space_name(queued_only: str) -> None:
    study = optuna.load_study(study_name="q", storage=queued_only)
    assert studies.load_config(study).space().name == "quickstart"


def test_images_beyond_memory_are_refused_before_allocation() -> None:
    with pytest.raises(DataError, match=r"need \d+ GiB, more than this machine's"):
        empty_images((10**6, 1024, 1024, 3), "data.resize")
