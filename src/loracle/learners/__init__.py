"""Learners: ways for the model to learn documents (see base.Learner), one package each.

The registry maps a learner's name to its config class (`learners/<name>/config.py`) and its learner class.
Both are imported only when asked for, and a config imports pydantic alone: listing learners, checking
`-o key=value` options or `loracle --help` never loads torch-heavy code.

    config = learner_config("ttt", {"steps_per_doc": 40})    # one-line LoracleError on a bad key or value
    learner = create_learner("ttt", lm, config)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import import_module
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from loracle.errors import LoracleError

if TYPE_CHECKING:
    from loracle.learners.base import Learner, LearnerConfig
    from loracle.model import LoadedModel

#: learner name -> ("module:ConfigClass", "module:LearnerClass")
_REGISTRY: dict[str, tuple[str, str]] = {
    name: (f"loracle.learners.{name}.config:{cls}Config", f"loracle.learners.{name}.learner:{cls}Learner")
    for name, cls in (
        ("context", "Context"),
        ("ttt", "TTT"),
        ("hypernet", "Hypernet"),
        ("memory", "Memory"),
        ("kstore", "KStore"),
        ("playbook", "Playbook"),
    )
}

LEARNER_NAMES: tuple[str, ...] = tuple(_REGISTRY)
#: what `loracle compile` and `watch` write adapters with unless told otherwise: the learner whose adapters
#: answer best on the learners benchmark (benchmarks/RESULTS.md)
DEFAULT_COMPILE_LEARNER = "ttt"


def _entry(name: str) -> tuple[str, str]:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise LoracleError(f"unknown learner {name!r} (known: {', '.join(LEARNER_NAMES)})")
    return entry


def _attribute(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(import_module(module), attr)


def config_class(name: str) -> type[LearnerConfig]:
    """The pydantic model of learner `name`'s options."""
    return _attribute(_entry(name)[0])


def learner_class(name: str) -> type[Learner]:
    """The class of learner `name` (imports its module, and with it torch)."""
    return _attribute(_entry(name)[1])


def learner_config(
    name: str, options: Mapping[str, Any] | LearnerConfig | None = None, where: str = ""
) -> LearnerConfig:
    """Learner `name`'s config from `options` (a mapping of option -> value, or a config already built).

    An unknown option or a bad value is refused in one line that names it and lists the learner's options,
    prefixed with `where` (the file it was read from) when given."""
    cls = config_class(name)
    if isinstance(options, cls):
        return options
    if options is not None and not isinstance(options, Mapping):
        raise LoracleError(
            f"{where + ': ' if where else ''}learner {name!r}: options must be a mapping, not {options!r}"
        )
    values = dict(options or {})
    known = ", ".join(cls.model_fields)
    prefix = f"{where}: " if where else ""
    unknown = sorted(set(values) - set(cls.model_fields))
    if unknown:
        raise LoracleError(f"{prefix}learner {name!r} has no option {unknown[0]!r} (its options: {known})")
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else ""
        value = f"={values[key]!r}" if key in values else ""
        raise LoracleError(
            f"{prefix}learner {name!r}: option {key}{value}: {first['msg']} (its options: {known})"
        ) from exc


def create_learner(
    name: str, lm: LoadedModel, options: Mapping[str, Any] | LearnerConfig | None = None, **collaborators: Any
) -> Learner:
    """A fresh learner `name` on the base model `lm` with `options` (checked as `learner_config` checks them).

    `collaborators` are what some learners take besides their options (e.g. `llm=` for playbook)."""
    config = learner_config(name, options)
    return learner_class(name)(lm, config, **collaborators)


def describe_options(name: str) -> list[tuple[str, str, str]]:
    """Learner `name`'s options as (key, default as `-o` would take it, description), in declaration order."""
    return [
        (key, json.dumps(field.default), field.description or "")
        for key, field in config_class(name).model_fields.items()
    ]
