"""A tiny compiled knowledge base for tests of the routed answer path: wiki pages, and for each an adapter
written directly (random LoRA factors on the tiny model's MLP down projections, via the PEFT writer) with the
manifest `loracle compile` would write, routing keys included. No learner runs, so it takes milliseconds.
`write_memory_kb` compiles the pages with the memory learner instead (an untrained network: prefix adapters)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from loracle.adapters.manifest import AdapterManifest
from loracle.adapters.peft_format import peft_key, write_lora_adapter
from loracle.knowledge_base import KnowledgeBase
from loracle.learners.hypernet.prefix import MemoryCompressor, PrefixConfig
from loracle.learners.hypernet.prefix_engine import DocToPrefix
from loracle.learners.memory.config import MemoryConfig
from loracle.learners.memory.learner import MemoryLearner
from loracle.model.loader import LoadedModel, model_fingerprint
from loracle.pipeline import wiki_source
from tests.conftest import build_tiny_model, build_tiny_tokenizer

#: the tiny model's seed whose greedy replies these adapters change visibly (most seeds reply only "\n")
SEED = 3


@dataclass(frozen=True)
class Page:
    """A wiki page and its adapter: `keys` None writes a manifest without routing keys (an older adapter)."""

    id: str
    title: str
    text: str
    keys: tuple[str, ...] | None = ()


KESTREL = Page(
    "kestrel-valley-observatory",
    "Kestrel Valley Observatory",
    "The Kestrel Valley Observatory was founded by Ilse Marrow in 1987.",
    ("Who founded the Kestrel Valley Observatory?", "1987 founded ilse kestrel marrow observatory valley"),
)
CORRA = Page(
    "corra-river",
    "Corra River",
    "The river Corra powers the Varn station.",
    ("What powers the Varn station?", "corra powers river station varn"),
)


def seeded_lm(seed: int = SEED) -> LoadedModel:
    """A fresh tiny model (the same weights for the same seed)."""
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), seed=seed)
    return LoadedModel(model, tokenizer, "tiny", "memory", model_fingerprint(model))


def save_seeded_model(folder: Path) -> Path:
    """The tiny model the adapters are made for, saved as a Hugging Face folder (a knowledge base's base)."""
    lm = seeded_lm()
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def write_page(root: Path, page: Page) -> Path:
    path = root / "wiki" / f"{page.id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\ntitle: {page.title}\n---\n{page.text}\n", encoding="utf-8")
    return path


def write_adapter(root: Path, lm: LoadedModel, page: Page, seed: int, **manifest: object) -> Path:
    """adapters/<page id>/ for the tiny model: rank-2 LoRA on every layer's down_proj, B large enough to change
    greedy replies, and the manifest compile writes (its content hash is the page's as it is now)."""
    folder = root / "adapters" / page.id
    generator = torch.Generator().manual_seed(seed)
    config = lm.model.config
    tensors = {}
    for layer in range(config.num_hidden_layers):
        module = f"model.layers.{layer}.mlp.down_proj"
        tensors[peft_key(module, "A")] = torch.randn(2, config.intermediate_size, generator=generator)
        tensors[peft_key(module, "B")] = torch.randn(config.hidden_size, 2, generator=generator)
    document = wiki_source(root).read(root / "wiki" / f"{page.id}.md")
    record = AdapterManifest(
        id=page.id,
        document_id=document.id,
        title=page.title,
        content_hash=document.hash,
        source="wiki",
        inputs=[document.id],
        learner="test",
        routing_keys=list(page.keys or []),
    ).model_dump()
    if page.keys is None:
        del record["routing_keys"]
    record |= {"base_fingerprint": lm.fingerprint, "base_model": lm.name, **manifest}
    write_lora_adapter(
        folder, tensors, r=2, alpha=2.0, target_modules=["down_proj"], base_model=lm.name, manifest=record
    )
    return folder


def write_compiled_kb(root: Path, lm: LoadedModel, pages: tuple[Page, ...] = (KESTREL, CORRA), model: str = "") -> Path:
    """A knowledge base at `root` (its base model `model` when given) with each page and its adapter."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "loracle.toml").write_text(f'[model]\nbase = "{model}"\n' if model else "", encoding="utf-8")
    for seed, page in enumerate(pages, start=1):
        write_page(root, page)
        write_adapter(root, lm, page, seed)
    return root


class LoudPrefix(DocToPrefix):
    """Prefixes five times as large: enough to change the tiny model's greedy replies (most are empty)."""

    def chunk_prefix(self, chunk: Sequence[int]) -> torch.Tensor:
        return super().chunk_prefix(chunk) * 5


def strong_learner(lm: LoadedModel, chunk_tokens: int = 8, max_new_tokens: int = 6) -> MemoryLearner:
    """A learner whose (untrained, enlarged) memory network visibly changes the tiny model's replies."""
    torch.manual_seed(0)
    config = PrefixConfig.for_model(lm.model, memory_tokens=3, compress_rank=2, chunk_tokens=chunk_tokens)
    net = MemoryCompressor.for_model(lm.model, config)
    with torch.no_grad():
        net.memory.mul_(20)
        for b in net.lora_b.values():
            b.normal_(0, 3)
    return MemoryLearner(lm, MemoryConfig(max_new_tokens=max_new_tokens), engine=LoudPrefix(lm, net.eval()))


def write_memory_kb(root: Path, lm: LoadedModel) -> KnowledgeBase:
    """A knowledge base of the two pages compiled by the memory learner (`strong_learner`): prefix adapters."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "loracle.toml").write_text("", encoding="utf-8")
    for page in (KESTREL, CORRA):
        write_page(root, page)
    kb = KnowledgeBase(root, learner="memory", compiler=strong_learner(lm), lm=lm)
    summary = kb.compile_all()
    assert not summary.failed
    return kb
