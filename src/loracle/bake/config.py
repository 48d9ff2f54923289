"""What `loracle bake` trains and how: one validated, frozen config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loracle.errors import LoracleError, validation_problem
from loracle.model.precision import PRECISION_HELP, Precision

#: bundled general prompts never trained on: the held-out set behaviour is measured on (benchmarks/bake.py)
HELD_OUT_PROMPTS = 50
#: the bundled general prompts there are (loracle/data/general_prompts.txt)
BUNDLED_PROMPTS = 119


class BakeConfig(BaseModel):
    """The instruction, the adapter's shape, its training and its data; the adapted modules and learning rate
    were chosen on dev prompts (`benchmarks.bake --sweep`: benchmarks/ABLATIONS.md, bake_sweep)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str = Field(min_length=1, max_length=2000, description="what the system prompt would say")
    modules: tuple[str, ...] = Field(
        ("q_proj", "v_proj"), min_length=1, description="names of the linear layers adapted in each decoder layer"
    )
    layer_fraction: float = Field(0.5, gt=0, le=1, description="share of the upper decoder layers adapted")
    rank: int = Field(8, ge=1, le=256, description="LoRA rank")
    alpha: float = Field(16.0, gt=0, description="LoRA alpha (the delta is scaled by alpha / rank)")
    steps: int = Field(48, ge=1, le=100_000, description="AdamW steps")
    batch_size: int = Field(8, ge=1, le=256, description="prompts per step")
    lr: float = Field(6e-3, gt=0, le=1, description="learning rate")
    precision: Precision = Field("auto", description=PRECISION_HELP)
    distill_weight: float = Field(1.0, ge=0, description="weight of the KL term against the teacher's top-k")
    answer_weight: float = Field(0.0, ge=0, description="weight of cross-entropy on the teacher's greedy reply")
    written_prompts: int = Field(16, ge=0, le=200, description="prompts the model writes from the instruction")
    general_prompts: int = Field(
        48,
        ge=0,
        le=BUNDLED_PROMPTS - HELD_OUT_PROMPTS,
        description="bundled general prompts trained on (the last 50 are held out for measurement)",
    )
    reply_tokens: int = Field(32, ge=1, le=1024, description="longest teacher reply trained on, in tokens")
    teacher_top_k: int = Field(16, ge=1, le=256, description="teacher tokens kept per position")
    candidate_top_k: int = Field(
        256, ge=0, description="normalise the loss over the base model's top-k and the targets (0: all tokens)"
    )
    seed: int = Field(0, ge=0, description="seed of the adapter's initialisation and batch order")

    @field_validator("instruction")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the instruction is blank")
        return value.strip()


def bake_config(instruction: str, options: Mapping[str, Any] | None = None) -> BakeConfig:
    """The config for `instruction` with `options` (option -> value); a bad one is refused in one line."""
    values = {**(options or {}), "instruction": instruction}
    try:
        return BakeConfig.model_validate(values)
    except ValidationError as exc:
        raise LoracleError(f"bake: {validation_problem(exc)} (options: {', '.join(BakeConfig.model_fields)})") from exc
