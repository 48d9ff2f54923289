"""The shipped hypernetwork checkpoint on the real model: compile the sample document into a PEFT adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loracle.learners.hypernet.learner import HypernetLearner
from loracle.learners.lora import hooked
from loracle.model import check_adapter_fits
from loracle.sources.files import read_document

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.integration
def test_shipped_checkpoint_compiles_the_sample_into_a_peft_adapter(embedded_lm, sample_dir: Path, tmp_path: Path):
    from peft import PeftModel

    doc = read_document(sample_dir / "kestrel-valley-observatory.md")
    learner = HypernetLearner(embedded_lm)
    report = learner.compile_document(doc, tmp_path / "adapter")
    assert report.tokens > 100 and report.bytes_on_disk < 5_000_000
    check_adapter_fits(embedded_lm, tmp_path / "adapter")

    ids = torch.tensor([embedded_lm.tokenizer.encode("Who founded the Kestrel Valley Observatory?")])
    engine = learner.engine
    with torch.no_grad():
        base = embedded_lm.model(input_ids=ids).logits
        with hooked(embedded_lm.model, engine.combine(engine.internalise(doc.text))):
            ours = embedded_lm.model(input_ids=ids).logits
    assert not torch.allclose(base, ours)  # the trained network writes a non-zero adapter
    peft_model = PeftModel.from_pretrained(embedded_lm.model, str(tmp_path / "adapter"))
    try:
        with torch.no_grad():
            theirs = peft_model(input_ids=ids).logits
    finally:
        peft_model.unload()  # the session-scoped base model is shared with other tests
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)
