"""Learners: ways for the model to learn documents (see base.Learner).

`create_learner(name, lm, **options)` builds one by name. Each entry imports its module only when
asked for, so listing learners (or `loracle --help`) never loads torch-heavy code.
"""

from __future__ import annotations

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


def create_learner(name: str, lm: LoadedModel, **options: Any) -> Learner:
    """A fresh learner `name` on the base model `lm`; unknown names get a one-line error listing the known ones."""
    target = _FACTORIES.get(name)
    if target is None:
        raise LoracleError(f"unknown learner {name!r} (known: {', '.join(LEARNER_NAMES)})")
    module_name, attr = target.split(":")
    factory: Callable[..., Learner] = getattr(import_module(module_name), attr)
    return factory(lm, **options)
