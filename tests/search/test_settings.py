"""A study's settings (`StudyConfig`): the space is parsed once per settings object, and the
cache never shows in the settings themselves, in what a study stores, or in a pickle."""

from __future__ import annotations

import gc
import pickle
from dataclasses import asdict, fields, replace
from pathlib import Path

from search import study as studies
from search.storage import open_storage
from search.study import StudyConfig
from spaces import load


def settings(tmp_path: Path) -> StudyConfig:
    space = load("quickstart")
    return StudyConfig(space.source, 4, 0, None, 2, str(tmp_path / "w"), pruner="none")


def test_the_space_is_parsed_once_with_its_overrides(tmp_path: Path) -> None:
    first = settings(tmp_path)
    space = first.space()
    assert first.space() is space
    assert space.train.epochs == 2 and space.pruner.kind == "none"
    other = replace(first, epochs=3)
    assert other.space() is not space and other.space().train.epochs == 3
    assert first.space() is space  # each object keeps its own


def test_the_cache_is_not_part_of_the_settings(tmp_path: Path) -> None:
    config = settings(tmp_path)
    config.space()
    assert vars(config) == asdict(config)
    assert set(vars(config)) == {f.name for f in fields(StudyConfig)}
    copy = pickle.loads(pickle.dumps(config))  # as Ray ships it to a worker
    assert copy == config and copy.space() == config.space()


def test_a_study_stores_the_settings_and_nothing_else(tmp_path: Path) -> None:
    config = settings(tmp_path)
    config.space()
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = studies.create_or_load(storage, "s", config.space(), config)
    assert set(study.user_attrs) == set(vars(config)) | {studies.OBJECTIVES_ATTR}
    assert studies.load_config(study) == config


def test_a_dropped_settings_object_takes_its_space_with_it(tmp_path: Path) -> None:
    gc.collect()  # settings an earlier test left in a reference cycle go now, not below
    before = len(studies._SPACES)
    config = settings(tmp_path)
    config.space()
    assert len(studies._SPACES) == before + 1
    del config
    gc.collect()
    assert len(studies._SPACES) == before
