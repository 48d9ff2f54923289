"""Learners: ways for the model to learn documents (see base.Learner).

`create_learner(name, lm, **options)` builds one by name. Each entry imports its module only when
asked for, so listing learners (or `loracle --help`) never loads torch-heavy code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

from loracle.errors import LoracleError

if TYPE_CHECKING:
    from loracle.learners.base import Learner
    from loracle.model import LoadedModel

#: learner name -> "module:factory"; the factory is called as factory(lm, **options)
_FACTORIES: dict[str, str] = {
    "context": "loracle.learners.context:ContextLearner",
    "ttt": "loracle.learners.ttt:TTTLearner",
    "hypernet": "loracle.learners.hypernet:HypernetLearner",
    "kstore": "loracle.learners.kstore:KStoreLearner",
    "playbook": "loracle.learners.playbook:PlaybookLearner",
}

LEARNER_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def learner_factory(name: str, options: dict[str, Any] | None = None) -> Callable[..., Learner]:
    """What builds learner `name`, after checking `options` against it: an unknown name or option gets a one-line
    error listing the known ones (before any model is loaded, when called first)."""
    target = _FACTORIES.get(name)
    if target is None:
        raise LoracleError(f"unknown learner {name!r} (known: {', '.join(LEARNER_NAMES)})")
    module_name, attr = target.split(":")
    factory: Callable[..., Learner] = getattr(import_module(module_name), attr)
    parameters = inspect.signature(factory).parameters
    known = [p for p in parameters if p != "lm"]
    unknown = sorted((options or {}).keys() - set(known))
    if unknown and all(p.kind != p.VAR_KEYWORD for p in parameters.values()):  # else the factory checks them
        raise LoracleError(f"learner {name!r} has no option {unknown[0]!r} (its options: {', '.join(known)})")
    return factory


def create_learner(name: str, lm: LoadedModel, **options: Any) -> Learner:
    """A fresh learner `name` on the base model `lm` (errors as `learner_factory`'s)."""
    return learner_factory(name, options)(lm, **options)
