"""Searching the recipe: `train:` fields and the stage width ratio declared as ranges or
choices are validated, drawn by Optuna as `train.*` / `model.stage_ratio` parameters,
replayed exactly, trained as drawn, exported as trained, and held at their declared
defaults by the baseline and by designed studies."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from test_report import check_figures, table_rows
from test_searcher import Search, space_file

import trainer.train
from search import ablate, export, ledger, report
from search.study import StudyConfig
from spaces import Space, SpaceError, load, parse, preset_names
from spaces.schema import TRAIN_FIELDS
from trainer.budget import resolve_arch
from trainer.data import Splits, load_dataset, make_splits
from trainer.models.net import Net, stage_channels
from trainer.spec import TrainSpec
from trainer.train import train

# Every kind of recipe field: an integer range, integer choices, a float range on a log
# scale, string choices, bool choices, and the stage ratio as a range.
RECIPE = """name: recipe
data: {dataset: digits, val_fraction: 0.2}
model:
  stem_channels: 4
  stage_ratio: {low: 1.0, high: 2.0}
  stages: [{channels: 4}, {}]
budget: {params: 2000}
train:
  epochs: {low: 1, high: 2}
  batch_size: [64, 128]
  lr: {low: 0.02, high: 0.3, log: true, default: 0.05}
  schedule: [cosine, constant]
  flip: [false, true]
  weight_decay: 0.0001
search: {trials: TRIALS, sampler: random, objectives: [accuracy, latency_ms], baseline: [gap]}
techniques: {gap: search}
"""


@pytest.fixture(scope="module")
def splits() -> Splits:
    return make_splits(load_dataset("digits", None), val_fraction=0.2, seed=0)


def recipe(tmp_path: Path, trials: int = 3) -> Space:
    return space_file(tmp_path, RECIPE.replace("TRIALS", str(trials)))


def raw_recipe(text: str = RECIPE) -> dict:
    return yaml.safe_load(text.replace("TRIALS", "3"))


def test_every_recipe_field_can_be_declared() -> None:
    assert [h.name for h in TRAIN_FIELDS] == [f.name for f in fields(TrainSpec)]
    for hyper in TRAIN_FIELDS:  # undeclared: the trainer's default, as before
        assert hyper.default == getattr(TrainSpec(), hyper.name)


def test_fixed_recipes_are_read_as_before() -> None:
    # The recipe preset searches its recipe, the wide presets their stages' blocks and kernels.
    searching = {"mnist_recipe_1_5k", "mnist_wide_1_5k", "cifar_wide_140k"}
    for name in set(preset_names()) - searching:
        space = load(name)
        assert space.recipe == () and space.stage_ratio is None
        assert not any(k.startswith(("train.", "model.")) for k in space.baseline_params())
    mnist = load("mnist_budget_1_5k")
    assert [s.channels for s in mnist.arch.stages] == [8, 12, 16]
    assert (mnist.train.epochs, mnist.train.batch_size, mnist.train.lr) == (10, 64, 0.05)


def test_searched_fields_have_their_defaults_in_the_baseline(tmp_path: Path) -> None:
    space = recipe(tmp_path)
    described = {r.name: r.describe() for r in space.recipe}
    assert described == {
        "model.stage_ratio": "model.stage_ratio = 1.5 (the midpoint of [1, 2])",
        "train.epochs": "train.epochs = 2 (the midpoint of [1, 2])",  # 1.5 rounds to even
        "train.batch_size": "train.batch_size = 64 (the first choice of {64, 128})",
        "train.lr": "train.lr = 0.05 (the declared default of [0.02, 0.3] log)",
        "train.schedule": "train.schedule = 'cosine' (the first choice of {'cosine', 'constant'})",
        "train.flip": "train.flip = False (the first choice of {False, True})",
    }
    baseline = space.replay(space.baseline_params())
    assert baseline.train == space.train and baseline.arch == space.arch
    assert (space.train.lr, space.train.batch_size, space.train.weight_decay) == (0.05, 64, 1e-4)
    assert [s.channels for s in space.arch.stages] == [4, 6]  # 4 * 1.5
    midpoint = parse(raw_recipe(RECIPE.replace(", default: 0.05", "")), "my.yaml")
    assert midpoint.train.lr == pytest.approx((0.02 * 0.3) ** 0.5)  # geometric: log scale


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        (
            "train",
            "lr",
            {"low": 0.5, "high": 0.1},
            "train.lr = {'high': 0.1, 'low': 0.5}: expected low <= high",
        ),
        ("train", "weight_decay", {"low": 0, "high": 0.1, "log": True}, "low > 0 on a log scale"),
        ("train", "lr", {"low": 0.1, "high": 20}, "train.lr = 20: expected number in [1e-06, 10]"),
        ("train", "lr", {"low": 0.1, "high": 0.2, "step": 1}, "accepted: low, high, log, default"),
        ("train", "lr", {"low": 0.1, "high": 0.2, "default": 0.3}, "train.lr.default = 0.3: e"),
        ("train", "batch_size", [], "train.batch_size = []: expected a non-empty list"),
        ("train", "batch_size", [64, 0], "train.batch_size = 0: expected integer in [1, 65536]"),
        ("train", "epochs", {"low": 1.5, "high": 3}, "train.epochs = 1.5: expected integer"),
        ("train", "schedule", ["cosine", "step"], "train.schedule = 'step': expected one of"),
        ("train", "schedule", {"low": 0, "high": 1}, "expected a value or list of values"),
        ("train", "nesterov", [1, 0], "train.nesterov = 1: expected one of False, True"),
        ("model", "stage_ratio", {"low": 1, "high": 5}, "model.stage_ratio = 5: expected number"),
        ("model", "stage_ratio", "wide", "model.stage_ratio = 'wide': expected int or float"),
        (
            "model",
            "stages",
            [{"channels": 4}, {"channels": 8}],
            "model.stages[1].channels = 8: expected no declaration: model.stage_ratio sets it",
        ),
        (
            "model",
            "stages",
            [{"channels": 64}, *[{}] * 7],
            "model.stage_ratio = {'high': 2.0, 'low': 1.0}: expected at most 1.81 with 8 stages",
        ),
        (
            "search",
            "pruner",
            "asha",
            "search.pruner.kind = 'asha': expected 'none' while train.epochs is searched",
        ),
    ],
)
def test_bad_recipe_declarations_name_the_key_and_what_is_accepted(
    section: str, key: str, value: object, message: str
) -> None:
    raw = raw_recipe()
    raw[section][key] = value
    with pytest.raises(SpaceError) as err:
        parse(raw, "my.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("my.yaml: ") and "\n" not in str(err.value)


def test_every_kind_of_field_is_suggested_under_its_name_and_replayed_exactly(
    tmp_path: Path,
) -> None:
    space = recipe(tmp_path)
    study = optuna.create_study(
        directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    seen: dict[str, set] = {k: set() for k in ("epochs", "batch_size", "schedule", "flip")}
    keys = set()
    for _ in range(40):
        trial = study.ask()
        spec = space.suggest(trial)
        assert space.replay(trial.params) == spec
        keys.add(ledger.config_key(trial.params, 0))
        for name in seen:
            assert getattr(spec.train, name) == trial.params[f"train.{name}"]
            seen[name].add(getattr(spec.train, name))
        assert spec.train.lr == trial.params["train.lr"] and 0.02 <= spec.train.lr <= 0.3
        assert spec.train.weight_decay == 1e-4 and "train.weight_decay" not in trial.params
        ratio = trial.params["model.stage_ratio"]
        assert 1.0 <= ratio <= 2.0
        assert [s.channels for s in spec.arch.stages] == [4, round(4 * ratio)]
        study.tell(trial, [0.5, 1.0])
    assert len(keys) == 40  # a continuous lr and ratio: every draw another configuration
    assert seen == {
        "epochs": {1, 2},
        "batch_size": {64, 128},
        "schedule": {"cosine", "constant"},
        "flip": {False, True},
    }


def test_a_searched_batch_size_and_lr_change_what_train_does(
    tmp_path: Path, splits: Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replayed spec is what the loop runs: its batches, its steps, its learning rate."""
    batches: list[int] = []
    rates: list[float] = []
    loss, step = trainer.train.soft_cross_entropy, torch.optim.SGD.step

    def counted_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        batches.append(len(logits))
        return loss(logits, targets)

    def watched_step(self: torch.optim.SGD, *args, **kwargs):  # type: ignore[no-untyped-def]
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(trainer.train, "soft_cross_entropy", counted_loss)
    monkeypatch.setattr(torch.optim.SGD, "step", watched_step)
    space = recipe(tmp_path)
    runs = {}
    for batch_size, lr in ((64, 0.03), (128, 0.25)):
        params = {
            **space.baseline_params(),
            "train.epochs": 1,
            "train.batch_size": batch_size,
            "train.lr": lr,
            "train.schedule": "constant",
        }
        batches.clear(), rates.clear()
        train(space.replay(params), splits, threads=1, latency_runs=2)
        runs[batch_size] = (list(batches), list(rates))
    steps = {b: len(splits.y_train) // b for b in (64, 128)}  # the last partial batch dropped
    assert runs[64] == ([64] * steps[64], [0.03] * steps[64])
    assert runs[128] == ([128] * steps[128], [0.25] * steps[128])


def test_the_stage_ratio_sets_the_width_distribution_the_budget_then_scales(
    tmp_path: Path, splits: Splits
) -> None:
    space = recipe(tmp_path)
    built = {}
    for ratio in (1.0, 2.0):
        spec = space.replay({**space.baseline_params(), "model.stage_ratio": ratio})
        fit = resolve_arch(spec, splits.image_shape, splits.num_classes)
        model = Net(fit.arch, splits.image_shape, splits.num_classes)
        convs = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert 2000 * 0.98 <= fit.params <= 2000  # fitted to the budget after the ratio
        built[ratio] = stage_channels(fit.arch)
        assert set(built[ratio]) <= set(convs)
    # One scale for every stage, then corrections of a few channels (`fit_to_budget`).
    _, first, second = built[1.0]
    assert second / first <= 1.2
    _, first, second = built[2.0]
    assert second / first >= 1.5


def test_rows_show_the_recipe_and_channels_each_trial_trained(
    tmp_path: Path, splits: Splits
) -> None:
    search = Search(tmp_path, recipe(tmp_path), splits, trials=3)
    search.drive()
    rows = export.rows(search.study, search.config, only_pareto=False)
    trials = {t.number: t for t in search.study.get_trials(states=(TrialState.COMPLETE,))}
    assert len(trials) >= 3
    for row in (r for r in rows if r["number"] in trials):
        params = trials[row["number"]].params
        for name in ("epochs", "batch_size", "lr", "schedule", "flip"):
            assert row[f"train.{name}"] == params[f"train.{name}"]
        assert row["train.weight_decay"] == 1e-4  # fixed, and shown
        assert row["model.stage_ratio"] == params["model.stage_ratio"]
        spec = search.config.space().replay(params)
        assert row["model.stages"] == "4-4-" + str(spec.arch.stages[1].channels)
        fit = resolve_arch(spec, splits.image_shape, splits.num_classes)
        assert row["channels"] == "-".join(map(str, stage_channels(fit.arch)))
        assert row["params"] == fit.params
    baseline = next(r for r in rows if r["baseline"])
    assert (baseline["train.lr"], baseline["train.batch_size"]) == (0.05, 64)


def test_a_row_shows_the_batch_size_trained_not_the_one_asked(
    tmp_path: Path, splits: Splits
) -> None:
    """A train split smaller than the batch asked for is trained as one batch per step."""
    small = replace(splits, x_train=splits.x_train[:40], y_train=splits.y_train[:40])
    search = Search(tmp_path, recipe(tmp_path), small, trials=2)
    search.drive()
    trials = {t.number: t for t in search.study.get_trials(states=(TrialState.COMPLETE,))}
    rows = export.rows(search.study, search.config, only_pareto=False)
    assert {r["number"] for r in rows} == set(trials)
    for row in rows:
        assert trials[row["number"]].params["train.batch_size"] in (64, 128)
        assert row["train.batch_size"] == 40
        assert "batch_size" not in row


def test_the_report_of_a_recipe_search_says_how_accuracy_varied_with_each_field(
    tmp_path: Path, splits: Splits
) -> None:
    search = Search(tmp_path, recipe(tmp_path), splits, trials=6)
    search.drive()
    doc = report.build(search.study, search.config)
    markdown = doc.markdown()
    frame = report.trials_frame(search.study, search.config)
    fields = ("epochs", "batch_size", "lr", "schedule", "flip")
    varied = [
        f for f in (*(f"train.{n}" for n in fields), "model.stage_ratio") if frame[f].nunique() > 1
    ]
    assert {"train.lr", "model.stage_ratio"} <= set(varied)  # ranges: always varied
    # The importance table ranks the recipe fields beside the switches.
    importance = table_rows(markdown, "parameter")
    assert {r["parameter"] for r in importance} >= set(varied)
    # The front shows each configuration's searched recipe (one seed: one trial each).
    front = table_rows(markdown, "trials")
    trials = {t.number: t for t in search.study.trials}
    assert front
    for row in front:
        assert float(row["train.lr"]) == pytest.approx(
            trials[int(row["trials"])].params["train.lr"], rel=1e-2
        )
    # Per choice: each value's trials and mean, as the frame has them.
    # Ranges (epochs, lr, stage ratio) are drawn against accuracy instead.
    choices = table_rows(markdown, "field")
    listed = set(varied) & {"train.batch_size", "train.schedule", "train.flip"}
    assert {r["field"] for r in choices} == listed
    for name in listed:
        counts = frame[name].value_counts()
        shown = {r["value"]: int(r["trials"]) for r in choices if r["field"] == name}
        assert shown == {str(v): int(n) for v, n in counts.items()}
    # Against the ranges: one figure.
    report.write(doc, tmp_path / "rep")
    check_figures(tmp_path / "rep", ["recipe.png"])


def test_epochs_given_on_the_command_line_fix_a_searched_epochs(tmp_path: Path) -> None:
    space = recipe(tmp_path)
    config = StudyConfig(
        space_source=space.source, trials=1, seed=0, data_dir=None, epochs=3, weights_dir="w"
    )
    fixed = config.space()
    assert space.searches("train.epochs") and not fixed.searches("train.epochs")
    assert "train.epochs" not in fixed.baseline_params()
    assert fixed.replay({**space.baseline_params(), "train.epochs": 1}).train.epochs == 3
    assert fixed.columns(fixed.baseline_params())["train.epochs"] == 3


def test_designs_train_the_searched_recipe_at_its_defaults(tmp_path: Path) -> None:
    space = recipe(tmp_path)
    design = ablate.make(space, "oat")
    for params, attrs in design.queue(space, [0, 1]):
        spec = space.replay(params, attrs["seed"])
        assert spec.train == space.train and spec.arch == space.arch
    preset = load("mnist_recipe_1_5k")
    for params, _ in ablate.make(preset, "paper").queue(preset, [0]):
        train_spec = preset.replay(params).train
        assert (train_spec.epochs, train_spec.batch_size, train_spec.lr) == (10, 64, 0.05)
        assert train_spec.schedule == "cosine" and params["model.stage_ratio"] == 1.5


def test_dry_run_says_which_default_each_searched_field_takes(search, tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.replace("TRIALS", "3"))
    result = search("ablate", str(path), "--dry-run", "--seeds", "1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "at its default: train.lr = 0.05 (the declared default of [0.02, 0.3] log)" in out
    assert "at its default: train.batch_size = 64 (the first choice of {64, 128})" in out
    assert "at its default: model.stage_ratio = 1.5 (the midpoint of [1, 2])" in out
    epochs = search("ablate", str(path), "--dry-run", "--seeds", "1", "--epochs", "4")
    assert "train.epochs" not in epochs.stdout  # fixed by --epochs: not searched


def test_successive_halving_is_refused_while_epochs_are_searched(search, tmp_path: Path) -> None:
    result = search("run", "mnist_recipe_1_5k", "--pruner", "asha")
    assert result.returncode == 2
    assert "not while the space searches train.epochs" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_recipe_preset_searches_what_issue_9_names() -> None:
    space = load("mnist_recipe_1_5k")
    names = {r.name for r in space.recipe}
    assert names == {
        "train.epochs",
        "train.batch_size",
        "train.lr",
        "train.schedule",
        "model.stage_ratio",
    }
    spec = space.replay(space.baseline_params())
    assert [s.channels for s in spec.arch.stages] == [8, 12, 18]  # ratio 1.5 before scaling
