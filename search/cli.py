"""The `search` command: a table of subcommands (`COMMANDS`), each pairing its arguments
with the function that runs it; this module parses and dispatches, nothing more.

Every input is validated (arguments, space, data, budget, storage) before Ray starts and
before the study is touched, so bad input costs one line (under 300 characters, any
storage password masked) and exit status 2, and leaves the storage and the working
directory as they were. Running a study is `search.session`'s.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import optuna

from search import ablate, arguments, estimate, export, latency, ledger, session, status, storage
from search import study as studies
from search.errors import UsageError, mask_url
from search.session import RUNS
from search.study import StudyConfig
from spaces import SpaceError, check_budget, check_build, check_length, load, preset_names
from spaces.schema import TRAIN_FIELDS
from spaces.space import PRUNERS
from trainer import group
from trainer.data import DataError, Splits
from trainer.schedule import WARMUP_RULE
from trainer.techniques import REGISTRY, rules

MAX_MESSAGE = 300


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported in one line like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {mask_url(message)[:200]} (see {self.prog} -h)\n")


def _output(text: str | None) -> Path | None:
    """The file `export -o` writes: its folder must exist, and it must not be a folder."""
    if text is None:
        return None
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"-o {text[:100]!r} is a directory; give a file path")
    if not path.parent.is_dir():
        raise UsageError(f"-o {text[:100]!r}: directory {str(path.parent)[:100]!r} does not exist")
    return path


def _existing_study(args: argparse.Namespace) -> tuple[optuna.Study, StudyConfig]:
    """The study `args.study` names and its stored settings; creates nothing."""
    study = studies.load_study(storage.open_storage(args.storage, create=False), args.study)
    return study, studies.load_config(study)


def _study_splits(settings: StudyConfig, data_dir: str | None) -> Splits:
    """The study's splits, from its data directory or the one given now."""
    data_dir = str(Path(data_dir).resolve()) if data_dir else settings.data_dir
    return session.load_splits(settings.space(), data_dir, settings.seed)


def _run(
    study: optuna.Study,
    settings: StudyConfig,
    splits: Splits,
    args: argparse.Namespace,
    target: int | None = None,
) -> int:
    """Run the study with the execution settings it recorded (`search.execution`), changed
    only as far as `--parallel`, `--gpus-per-trial` and `--fuse` may; a refused override
    costs one line before anything is written. `target`: a new trial target, set once
    accepted."""
    plan = session.execution(study, args.parallel, args.gpus_per_trial, args.fuse)
    if target:
        studies.set_target(study, target)
        settings = studies.load_config(study)
    return session.run(
        study, settings, splits, plan, address=args.address, strict_front=args.strict_front
    )


# Arguments several commands share.


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        help=f"Optuna storage URL or journal file (default: ${storage.STORAGE_ENV}, else "
        f"{storage.DEFAULT_STORAGE})",
    )


def _study_args(p: argparse.ArgumentParser) -> None:
    """An existing study: its name and storage."""
    p.add_argument("study")
    _storage_arg(p)


def _study_data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where data sets are read from (default: the study's)")


def _space_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="a shipped preset name (see `search list`) or a .yaml file")


def _epochs_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--epochs", type=arguments.integer(1, 10_000), help="override the preset's epochs"
    )


def _runner_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--parallel",
        type=arguments.integer(1, 1024),
        help="trials at once (default: the study's first run's, else 1); a new study gives "
        "each trial cores // K threads, and keeps that many",
    )
    p.add_argument(
        "--gpus-per-trial",
        type=arguments.fraction,
        help="GPU fraction per trial, or per fused group (default: the study's first run's, "
        "else 0: the CPU)",
    )
    p.add_argument(
        "--fuse",
        type=arguments.fuse,
        help="train queued trials that may share a network (see `search techniques`) as one "
        "fused group of up to K: auto (as many as pay on the device), off, or K (default: the "
        "study's first run's, else auto); a group takes one --parallel slot",
    )
    p.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS") or None,
        help="address of a running Ray cluster (default: $RAY_ADDRESS, else start Ray here, "
        "even where `ray start` left a cluster running on this machine)",
    )
    _strict_front_arg(p, "print")
    p.add_argument("--data-dir", help="where data sets are read from")
    p.add_argument(
        "--download",
        action="store_true",
        help="let torchvision download a missing standard data set into --data-dir",
    )


def _strict_front_arg(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument(
        "--strict-front",
        action="store_true",
        help=f"{verb} Optuna's strict Pareto front of single trials, not the noise-aware front "
        "of configurations (which drops a trial only noise kept on the strict one)",
    )


# The commands: each one's arguments, then the function that runs it.


def run_args(p: argparse.ArgumentParser) -> None:
    _space_arg(p)
    p.add_argument(
        "--trials",
        type=arguments.integer(1, 1_000_000),
        help="trial target (default: the preset's)",
    )
    p.add_argument(
        "--study", type=arguments.study_name, help="study name (default: <preset>-<date>-<time>)"
    )
    _epochs_arg(p)
    p.add_argument(
        "--seed",
        type=arguments.integer(0, 2**32 - 1),
        default=0,
        help="seed of sampler, split, training",
    )
    p.add_argument(
        "--seeds",
        type=arguments.run_seeds,
        default=1,
        help="paired training seeds per configuration (--seed, --seed + 1, ...), each its own "
        "trial; --trials counts configurations, so the study trains trials x seeds (default 1)",
    )
    p.add_argument(
        "--grace-period",
        type=arguments.integer(1, 86_400),
        default=ledger.DEFAULT_GRACE,
        help="seconds without a heartbeat after which a trial's driver counts as dead "
        f"(default {ledger.DEFAULT_GRACE:.0f}; kept by the study)",
    )
    p.add_argument(
        "--pruner",
        choices=PRUNERS,
        help="successive halving (asha) or none (default: the space's search.pruner, else none)",
    )
    _storage_arg(p)
    _runner_args(p)


def cmd_run(args: argparse.Namespace) -> int:
    space = load(args.space)
    name = args.study or f"{space.name[:80]}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.seed + args.seeds > 2**32:
        raise UsageError(f"--seed {args.seed} --seeds {args.seeds}: the seeds pass 2**32 - 1")
    settings = StudyConfig(
        space_source=space.source,
        trials=(args.trials or space.trials) * args.seeds,
        seed=args.seed,
        data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
        epochs=args.epochs,
        weights_dir=str((RUNS / "weights").resolve()),
        seeds=args.seeds,
        grace_period=args.grace_period,
        pruner=args.pruner,
    )
    pruner, epochs = settings.space().pruner, settings.space().train.epochs
    if pruner.kind == "asha" and settings.space().searches("train.epochs"):
        raise UsageError(
            "--pruner asha: successive halving compares trials at the same epoch, so not while "
            "the space searches train.epochs; fix it (in the space or with --epochs)"
        )
    if pruner.kind == "asha" and not pruner.rungs(epochs):
        raise UsageError(
            f"successive halving needs a rung before the last epoch: min_epochs "
            f"{pruner.min_epochs} is not below {epochs} epochs; train more epochs or lower "
            "search.pruner.min_epochs"
        )
    # Read once, before the storage is touched: bad data costs nothing.
    splits = session.load_splits(settings.space(), settings.data_dir, settings.seed, args.download)
    check_build(space, splits.image_shape, splits.num_classes)  # every network it can propose
    check_budget(settings.space(), splits.image_shape, splits.num_classes)
    check_length(settings.space(), len(splits.y_train))
    opened = storage.open_storage(args.storage)
    session.start_ray(args.address)  # an unreachable cluster fails before the study is written
    study = studies.create_or_load(opened, name, settings.space(), settings)
    target = args.trials and args.trials * args.seeds
    return _run(study, studies.load_config(study), splits, args, target=target)


def ablate_args(p: argparse.ArgumentParser) -> None:
    _space_arg(p)
    p.add_argument(
        "--design",
        default="oat",
        help=f"one of {', '.join(ablate.DESIGNS)}: one technique at a time on the baseline, "
        "leave one out of the full combination, both, or the paper's table (default oat)",
    )
    p.add_argument(
        "--seeds",
        type=arguments.design_seeds,
        default=3,
        help="paired training seeds per configuration (default 3), or 'auto': --min-seeds "
        "first, then one more a round for the reference and each comparison still open, up "
        "to --max-seeds (group-sequential tests: the error rate holds at every round)",
    )
    # The defaults are `search.sequential.Plan`'s, which scipy comes with: imported only
    # when a design is about to run, not for every command's help.
    p.add_argument(
        "--min-seeds",
        type=arguments.integer(1, 1000),
        help="with --seeds auto: seeds of the first round (default 3)",
    )
    p.add_argument(
        "--max-seeds",
        type=arguments.integer(1, 1000),
        help="with --seeds auto: the most seeds a configuration gets (default 8)",
    )
    p.add_argument(
        "--min-effect",
        type=arguments.points,
        help="with --seeds auto: accuracy points below which a difference is negligible; a "
        "comparison then also resolves as 'negligible' (default: only higher or lower)",
    )
    p.add_argument(
        "--study",
        type=arguments.study_name,
        help="study name (default: <preset>-<design>-<date>-<time>)",
    )
    _epochs_arg(p)
    p.add_argument(
        "--seed",
        type=arguments.integer(0, 2**32 - 1000),
        default=0,
        help="split and sampler seed; the first seed",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the design, each configuration's size and estimated time, and exit, "
        "touching nothing",
    )
    _storage_arg(p)
    _runner_args(p)


def cmd_ablate(args: argparse.Namespace) -> int:
    seeds_plan = arguments.seeds_plan(args)
    space = load(args.space)
    if args.epochs:
        space = space.with_epochs(args.epochs)
    design = ablate.make(space, args.design)
    seeds = ablate.seeds(args.seed, seeds_plan.min_seeds if seeds_plan else args.seeds)
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    splits = session.load_splits(space, data_dir, args.seed, args.download)
    check_build(space, splits.image_shape, splits.num_classes)  # every network it can propose
    check_length(space, len(splits.y_train), searched=False)  # a design trains the defaults
    design = ablate.within_budget(design, space, splits.image_shape, splits.num_classes)
    print(design.describe(seeds, seeds_plan and seeds_plan.max_seeds))
    for field in space.recipe:  # a design compares techniques on one recipe: the defaults
        print(f"searched recipe field at its default: {field.describe()}")
    if args.dry_run:
        # a first run's defaults: one trial at once, on the CPU
        machine = estimate.Machine.here(args.parallel or 1, args.gpus_per_trial or 0.0)
        costs = estimate.probe(design, space, splits, machine)
        most = seeds_plan.max_seeds if seeds_plan else len(seeds)  # auto: an upper bound
        print(estimate.describe(costs, space, splits, most, machine))
        if seeds_plan:
            print("--seeds auto: at most this; a comparison resolved early trains fewer seeds")
        return 0
    settings = StudyConfig(
        space_source=space.source,
        trials=len(design.configs) * len(seeds),
        seed=args.seed,
        data_dir=data_dir,
        epochs=args.epochs,
        weights_dir=str((RUNS / "weights").resolve()),
        design=design.name,
        seeds=len(seeds),
        max_seeds=seeds_plan and seeds_plan.max_seeds,
        min_effect=seeds_plan and seeds_plan.min_effect,
        pruner="none",  # a design's comparisons need every configuration trained to the end
    )
    opened = storage.open_storage(args.storage)
    session.start_ray(args.address)
    name = args.study or f"{space.name[:70]}-{design.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    study = studies.create_or_load(
        opened,
        name,
        space,
        settings,
        queue=design.queue(space, seeds),
        attrs={studies.DESIGN_ATTR: design.attrs(seeds)},
    )
    return _run(study, studies.load_config(study), splits, args)


def resume_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    _runner_args(p)


def cmd_resume(args: argparse.Namespace) -> int:
    study, settings = _existing_study(args)
    if args.data_dir:
        settings = replace(settings, data_dir=str(Path(args.data_dir).resolve()))
    splits = session.load_splits(settings.space(), settings.data_dir, settings.seed, args.download)
    session.start_ray(args.address)
    return _run(study, settings, splits, args)


def export_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument(
        "--pareto",
        action="store_true",
        help="only the trials on the noise-aware Pareto front (every seed of its configurations)",
    )
    _strict_front_arg(p, "with --pareto, the trials on")
    p.add_argument("--format", choices=export.FORMATS, default="csv")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.add_argument(
        "--test",
        action="store_true",
        help="add the test accuracy of every trial with saved weights (with --pareto: the front)",
    )
    _study_data_dir_arg(p)


def cmd_export(args: argparse.Namespace) -> int:
    if args.strict_front and not args.pareto:
        raise UsageError("--strict-front chooses the front --pareto keeps: give it with --pareto")
    if args.format == "parquet" and not args.output:
        raise UsageError("--format parquet writes a binary file: give it with -o FILE")
    output = _output(args.output)
    study, settings = _existing_study(args)
    table = export.rows(study, settings, only_pareto=args.pareto, strict=args.strict_front)
    if ledger.done(study.get_trials(deepcopy=False)) == 0:
        print(
            f"study {args.study!r} has no finished trials yet; continue it with "
            f"`search resume {args.study}`",
            file=sys.stderr,
        )
    if args.test:
        splits = _study_splits(settings, args.data_dir)
        missing = export.add_test_accuracy(table, study, settings, splits)
        if missing:
            print(
                f"no saved weights for trials {', '.join(map(str, missing[:20]))}"
                f"{', ...' if len(missing) > 20 else ''} under {settings.weights_dir}: their "
                "test_accuracy is empty",
                file=sys.stderr,
            )
    text = export.write(table, args.format, output)
    if text is not None:
        sys.stdout.write(text)
    return 0


def report_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument("-o", "--output", help="directory to write (default: runs/reports/<study>)")
    p.add_argument(
        "--test", action="store_true", help="add test accuracy from the saved weights (reported)"
    )
    _strict_front_arg(p, "show")
    _study_data_dir_arg(p)


def cmd_report(args: argparse.Namespace) -> int:
    from search import report  # matplotlib and scipy are imported only to write a report

    study, settings = _existing_study(args)
    directory = Path(args.output or RUNS / "reports" / study.study_name)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"-o {directory}: exists and is not a directory; give a directory")
    test_accuracy = None
    if args.test:
        splits = _study_splits(settings, args.data_dir)
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}

        def test_accuracy(number: int) -> float:
            return export.test_accuracy(by_number[number], settings, splits, study.study_name)

    doc = report.build(study, settings, test_accuracy, strict_front=args.strict_front)
    try:
        written = report.write(doc, directory)
    except OSError as err:
        raise UsageError(f"cannot write the report into {directory}: {err.strerror}") from None
    for path in written:
        print(path)
    return 0


def remeasure_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument("--all", action="store_true", help="every complete trial, not only the fronts'")
    _study_data_dir_arg(p)


def cmd_remeasure(args: argparse.Namespace) -> int:
    from search import configurations  # scipy: only when trials are re-timed

    study, settings = _existing_study(args)
    splits = _study_splits(settings, args.data_dir)
    if args.all:
        trials = study.get_trials(deepcopy=False)
    else:
        trials = configurations.on_either_front(study, settings.space())
    alone, untimed = latency.remeasure(study, settings, splits, trials, again=True)
    for trial in trials:
        record = alone.get(str(trial.number))
        if record and trial.number not in untimed:
            print(
                f"trial {trial.number}: {record['median_ms']:.4f} ms (IQR {record['iqr_ms']:.4f}) "
                f"on {record['device']}, {record['threads']} "
                f"thread{'' if record['threads'] == 1 else 's'}, {record['runs']} runs"
            )
    if untimed:
        print(f"not re-timed (trained on a GPU this machine lacks): trials {untimed}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    print(status.report(*_existing_study(args)))
    return 0


def _no_args(p: argparse.ArgumentParser) -> None:
    """A command that takes no arguments."""


def cmd_list(args: argparse.Namespace) -> int:
    for name in preset_names():
        space = load(name)
        version = f"v{space.protocol.version}" if space.protocol else "-"
        print(f"{name:24} {version:4} {space.description}")
    return 0


def cmd_techniques(args: argparse.Namespace) -> int:
    for name, cls in REGISTRY.items():
        print(f"{name} ({cls.kind}): {cls.summary} [{cls.source}]")
        for hyper in cls.hypers:
            fixed = "" if hyper.searched else " (fixed at the default unless a space searches it)"
            print(
                f"    {name}.{hyper.name:16} default {hyper.default!r:8} {hyper.describe()}{fixed}"
            )
            if hyper.doc:
                print(f"        {hyper.doc}")
        for rule in rules.rules_for(name):
            print(f"    rule with {' x '.join(rule.techniques)}: {rule.decision}")
    print("recipe (train:, every trial's; a space fixes or searches each field)")
    for field in TRAIN_FIELDS:
        print(f"    train.{field.name:17} default {field.default!r:8} {field.describe()}")
    print(f"    rule: {WARMUP_RULE}")
    print(f"fused groups (--fuse): {group.RULE}")
    return 0


@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help, what adds its arguments, and what runs it (an exit
    status from the parsed arguments)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# Adding a command is one entry here; `search -h` lists them in this order.
COMMANDS = {
    "run": Command("run a study, or continue one of the same name", run_args, cmd_run),
    "ablate": Command(
        "train a designed ablation: every configuration with paired seeds", ablate_args, cmd_ablate
    ),
    "resume": Command("continue an interrupted study to its trial target", resume_args, cmd_resume),
    "export": Command("write a study's trials as CSV, JSON or Parquet", export_args, cmd_export),
    "report": Command(
        "write a study's report: report.md, report.html, figures", report_args, cmd_report
    ),
    "remeasure": Command(
        "re-time the latency of the fronts' trials (strict and noise-aware) alone, one at a "
        "time, here",
        remeasure_args,
        cmd_remeasure,
    ),
    "status": Command("a study's progress, running trials and failures", _study_args, cmd_status),
    "list": Command("the shipped presets", _no_args, cmd_list),
    "techniques": Command("the registered techniques", _no_args, cmd_techniques),
}


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="search", description="Ablation search for efficient CNNs.")
    sub = top.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help)
        command.add_arguments(p)
        p.set_defaults(func=command.run)
    return top


def _as_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM to the driver (`kill`, `timeout --foreground`, a scheduler's preemption) ends
    a study as Ctrl-C does: the running trials are recorded as interrupted, to train again
    at resume, instead of waiting out the heartbeat grace period. Whoever handles SIGINT at
    that moment (Ray Tune during a study, else Python's KeyboardInterrupt) handles it."""
    os.kill(os.getpid(), signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    on_term = signal.signal(signal.SIGTERM, _as_ctrl_c)
    try:
        return args.func(args)
    except (UsageError, SpaceError, DataError) as err:
        line = "search: error: " + " ".join(mask_url(str(err)).split())  # one line, always
        if len(line) > MAX_MESSAGE:
            line = line[: MAX_MESSAGE - 3] + "..."
        print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("search: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, on_term)
        session.stop_ray()


if __name__ == "__main__":
    sys.exit(main())
