"""`loracle bake`: an instruction (what a system prompt would say) trained into a LoRA adapter.

The adapter makes the model answer, with no system prompt, as it answers with the instruction as its system
prompt: context distillation from the prompted model (teacher) to the unprompted one plus the adapter
(student), over the teacher's own replies to prompts the model writes from the instruction and to bundled
general prompts. The result is a plain PEFT folder that stacks with knowledge adapters.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: names imported on first use (PEP 562): the CLI reads the config's options without importing torch
_WHERE = {"BakeReport": "baker", "bake": "baker", "BakeConfig": "config", "bake_config": "config"}

__all__ = ["BakeConfig", "BakeReport", "bake", "bake_config"]

if TYPE_CHECKING:
    from loracle.bake.baker import BakeReport, bake
    from loracle.bake.config import BakeConfig, bake_config


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'loracle.bake' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"loracle.bake.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
