"""`loracle bake` on the real embedded model, kept small: the teacher is the model with the instruction as its
system message (not SmolLM's default one), and a short bake already moves the bare model toward it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from loracle.bake.baker import bake
from loracle.bake.config import bake_config
from loracle.bake.measure import kl_per_token, teacher_targets
from loracle.model import apply_adapters, encode_chat, question_messages
from loracle.model.loader import LoadedModel

pytestmark = pytest.mark.integration

INSTRUCTION = "Answer in French."


def test_a_short_bake_moves_the_bare_model_toward_the_prompted_one(embedded_lm: LoadedModel, tmp_path: Path) -> None:
    told = embedded_lm.tokenizer.decode(encode_chat(embedded_lm.tokenizer, question_messages("Hi", system=INSTRUCTION)))
    assert INSTRUCTION in told and "SmolLM" not in told  # the instruction replaces the default system prompt

    options = {"steps": 12, "written_prompts": 2, "general_prompts": 10, "reply_tokens": 12, "batch_size": 4}
    config = bake_config(INSTRUCTION, options)
    report = bake(embedded_lm, config, tmp_path / "french")
    targets = teacher_targets(embedded_lm, INSTRUCTION, report.prompts, config.reply_tokens)
    copied = LoadedModel(copy.deepcopy(embedded_lm.model), embedded_lm.tokenizer, "e", "e", embedded_lm.fingerprint)
    baked = apply_adapters(copied, [tmp_path / "french"], merge=True)
    assert kl_per_token(baked, targets) < 0.8 * kl_per_token(embedded_lm, targets)
