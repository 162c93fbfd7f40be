"""The search's sampler: Optuna's TPE, made a pure function of where a trial stands.

A seeded sampler object keeps one random stream for a whole study, so a sampler rebuilt on
resume (or a second driver's) starts that stream again and proposes the first configurations
again. Here every trial gets a TPE seeded afresh from (search seed, method, slot), where the slot
is the trial's place in the method's budget (its rank among the trials that count). A trial's
configuration therefore depends only on that key and on the trials completed before it was
asked, however often the study was interrupted and whichever driver asked it. It is also never
the configuration of another counted trial of the method (running ones included, so two drivers
sharing a storage never run one configuration twice): a repeat is drawn again from the next
seed of the same slot.
"""
from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from audit.search.drivers import CANCELLED, slot_of

REDRAWS = 64  # draws of one slot before a repeat is accepted (a space with fewer points than the budget)


def slot_seed(search_seed: int, method: str, slot: int, draw: int = 0) -> int:
    """The TPE seed of one draw of one slot: well mixed, and the same on every machine."""
    entropy = [search_seed, zlib.crc32(method.encode()), slot, draw]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


class SlotSampler(BaseSampler):
    """TPE (Optuna's defaults) seeded per trial from (search seed, method, slot); see the module."""

    def __init__(self, search_seed: int, method: str, space: Mapping[str, BaseDistribution]) -> None:
        self.search_seed, self.method, self.space = search_seed, method, dict(space)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        # The whole space is drawn here, at once, so that a repeated configuration can be drawn again.
        return dict(self.space)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        trials = study.get_trials(deepcopy=False)
        slot = slot_of(trials, trial.number)
        taken = [t.params for t in trials if t.number != trial.number and _counts(t)]
        for draw in range(REDRAWS):
            params = self._draw(study, trial, search_space, slot_seed(self.search_seed, self.method, slot, draw))
            if params not in taken:
                return params
        logging.getLogger(__name__).warning(
            "%s: every configuration drawn for trial %d was already tried (%d draws); its space has fewer points "
            "than the budget, so this one runs again", self.method, slot, REDRAWS)
        return params

    @staticmethod
    def _draw(study: optuna.Study, trial: FrozenTrial, space: dict[str, BaseDistribution], seed: int) -> dict[str, Any]:
        """What one TPE seeded with ``seed`` asks for this trial, as Optuna's own ask would:
        its joint (relative) part first, every other dimension independently, in the space's order."""
        tpe = TPESampler(seed=seed)
        tpe.before_trial(study, trial)
        relative = tpe.sample_relative(study, trial, tpe.infer_relative_search_space(study, trial))
        params = {}
        for name, dist in space.items():
            if dist.single():
                params[name] = optuna.distributions._get_single_value(dist)
            elif name in relative:
                params[name] = relative[name]
            else:
                params[name] = tpe.sample_independent(study, trial, name, dist)
        return params

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        # Only a dimension outside the method's space gets here (none does in a study).
        return TPESampler(seed=slot_seed(self.search_seed, self.method, slot_of(study.get_trials(deepcopy=False), trial.number))
                          ).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        pass  # the per-trial TPEs keep no state between trials


def _counts(t: FrozenTrial) -> bool:
    return not t.user_attrs.get(CANCELLED) and bool(t.params)


def sampler_for(search_seed: int, method: str, space: Mapping[str, BaseDistribution]) -> SlotSampler:
    """The sampler of one method's Optuna study."""
    return SlotSampler(search_seed, method, space)
