"""Which queued trials join a trial just asked for, to train with it as one fused group
(`--fuse`, `search.execution`; one Ray task, `search.runner`).

Whether two trials may share a network is the trainer's rule (`trainer.group.group_key`,
printed by `search techniques`); here: a queued trial's group key, from the parameters and
seed it was queued with, and the queued trials of a key in queue order. A designed study
queues whole seeds first, so its groups, taken in that order, do too.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import ledger
from spaces import Space
from trainer.budget import resolve_arch
from trainer.group import group_key


class Queue:
    """A study's queued trials by group key; each configuration's key is computed once (it
    fits the budget), the searcher is long-lived."""

    def __init__(
        self, space: Space, study_seed: int, in_shape: tuple[int, int, int], num_classes: int
    ):
        self.space, self.study_seed = space, study_seed
        self.in_shape, self.num_classes = in_shape, num_classes
        self.keys: dict[str, Hashable | None] = {}  # by configuration key; None: unbuildable

    def key_of(self, queued: FrozenTrial) -> Hashable | None:
        """A queued trial's group key; None when its network cannot be built (it is then
        asked for alone, and why recorded)."""
        params, seed = ledger.queued_params(queued), ledger.seed_of(queued, self.study_seed)
        config = ledger.config_key(params, seed)
        if config not in self.keys:
            try:
                spec = self.space.replay(params, seed=seed)
                arch = resolve_arch(spec, self.in_shape, self.num_classes).arch
                self.keys[config] = group_key(spec, arch)
            except Exception:  # any reason it cannot train: recorded when it is asked for
                self.keys[config] = None
        return self.keys[config]

    def partners(
        self, study: optuna.Study, key: Hashable, taken: set[str]
    ) -> Iterator[FrozenTrial]:
        """The study's queued trials of group key `key`, in queue order, but for those whose
        configuration is in `taken` (known to the study, or in the group already; a queued
        duplicate is left to be asked for alone, and recorded so); each one yielded is added
        to `taken`."""
        for queued in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            config = ledger.config_key(
                ledger.queued_params(queued), ledger.seed_of(queued, self.study_seed)
            )
            if config not in taken and self.key_of(queued) == key:
                taken.add(config)
                yield queued
