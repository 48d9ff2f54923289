"""Adapters benchmark: a compile learner's adapters measured the way a user meets them, on one corpus.

One run, one process: the corpus's documents go into a fresh knowledge base's raw/, `loracle compile` (its
Python function) turns each into a PEFT folder, then the same questions are answered four ways, greedy, with
the same reply cap: the base model with the bare question (floor), with the question's own document in the
prompt (ceiling), with the question's own document's adapter loaded by plain `PeftModel.from_pretrained`
(plain PEFT), and through `KnowledgeBaseAnswerer` over the knowledge base (routed, what `ask --kb` and the
server's model "kb" answer with). Forgetting: the general-set items the base model gets right, asked with each
adapter applied (plain PEFT, pooled over adapters) and through the routed path. Results go to
results/adapters-<corpus>.json and a RESULTS.md section.

    nice -n 10 .venv/bin/python -m benchmarks.adapters --corpus fictional --learner ttt
    nice -n 10 .venv/bin/python -m benchmarks.adapters --corpus squad --learner ttt
    nice -n 10 .venv/bin/python -m benchmarks.adapters --corpus fictional -o steps_per_doc=2 --docs 2 --questions 4
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.common import machine_info, row, write_result
from benchmarks.devdata import SQUAD
from benchmarks.learners import DATA, head_commit
from loracle.documents import Document
from loracle.eval.general import GeneralItem
from loracle.eval.harness import QuestionResult
from loracle.eval.inputs import EvalInputs
from loracle.eval.qa import QAItem, spread
from loracle.model import LoadedModel, Message

CORPORA = ("fictional", "squad")
PATHS = ("floor", "ceiling", "plain PEFT", "routed")
#: the columns of the summary table, in order
COLUMNS = (
    "path",
    "right / total",
    "of ceiling (95% interval)",
    "token F1",
    "median words",
    "general lost",
    "s / answer",
    "learn s / doc",
    "adapter MB / 300 tokens",
)
Say = Callable[[str], None]


# -- the corpus ----------------------------------------------------------------------------------------------
def load_corpus(corpus: str, docs: int | None, questions: int | None) -> EvalInputs:
    """The corpus's documents and questions through the eval package's loaders, limited by `restrict`."""
    from loracle.eval.inputs import load_inputs

    if corpus == "fictional":
        return restrict(load_inputs(DATA, DATA / "qa.jsonl"), docs, questions, learn_unasked=True)
    return restrict(load_inputs(squad_file=SQUAD), docs, questions, learn_unasked=False)


def restrict(inputs: EvalInputs, docs: int | None, questions: int | None, *, learn_unasked: bool) -> EvalInputs:
    """The first `docs` documents and up to `questions` questions about them only, spread over the documents
    as the eval harness spreads them (so with no document limit, the same questions as `loracle eval`).

    `learn_unasked`: keep documents no chosen question is about (the fictional corpus learns every document,
    so routing has distractors); otherwise (SQuAD) only the paragraphs asked about are learned, as the
    learners benchmark does."""
    names = list(inputs.docs)[:docs] if docs is not None else list(inputs.docs)
    kept = set(names)
    pools: dict[tuple[str, ...], list[QAItem]] = {}
    for item in inputs.items:
        if set(item.docs) <= kept:
            pools.setdefault(item.docs, []).append(item)
    items = spread(list(pools.values()), questions)
    if not learn_unasked:
        asked = {name for item in items for name in item.docs}
        names = [name for name in names if name in asked]
    return EvalInputs({name: inputs.docs[name] for name in names}, items, list(inputs.warnings), dict(inputs.notes))


# -- the knowledge base --------------------------------------------------------------------------------------
def raw_text(doc: Document) -> str:
    """A document as a markdown file whose reading gives back its title and text (frontmatter title)."""
    return f"---\ntitle: {json.dumps(doc.title)}\n---\n{doc.text.strip()}\n"


def fill_raw(root: Path, docs: Mapping[str, Document]) -> dict[str, str]:
    """Write each document into a new knowledge base's raw/; the adapter id each will be compiled under, by
    the name the questions use."""
    from loracle.pipeline import raw_source
    from loracle.wiki.layout import init_kb

    kb = init_kb(root)
    source = raw_source(kb.root)
    ids = {}
    for name, doc in docs.items():
        path = kb.raw / f"{Path(name).stem}.md"
        path.write_text(raw_text(doc), encoding="utf-8")
        adapter_id = source.doc_id(path)
        if adapter_id is None:
            raise ValueError(f"{path}: not a document of raw/")
        ids[name] = adapter_id
    if len(set(ids.values())) != len(ids):
        raise ValueError("two documents of the corpus would share an adapter id")
    return ids


@dataclass
class Compiled:
    """What compiling cost, per document (by the name questions use)."""

    seconds: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0


def compile_kb(
    lm: LoadedModel, root: Path, ids: Mapping[str, str], learner: str, options: Mapping[str, Any], say: Say
) -> Compiled:
    """`loracle compile --from raw --learner LEARNER -o ...` on the knowledge base; every document must compile."""
    from loracle.eval.harness import folder_bytes
    from loracle.knowledge_base import KnowledgeBase
    from loracle.pipeline import CompileEvent

    def progress(step: CompileEvent) -> None:
        if step.seconds is not None:
            say(f"{step.event} {step.name} in {step.seconds:.1f} s ({step.done}/{step.total})")

    knowledge = KnowledgeBase(root, learner=learner, source="raw", lm=lm, learner_options=dict(options))
    summary = knowledge.compile_all(progress=progress)
    if summary.failed or len(summary.compiled) != len(ids):
        problems = "; ".join(f.message for f in summary.failed) or f"compiled {sorted(summary.compiled)}"
        raise RuntimeError(f"compile did not build every adapter: {problems}")
    compiled = Compiled(wall_s=summary.seconds)
    for name, adapter_id in ids.items():
        doc = knowledge.source.read(knowledge.paths.raw / f"{Path(name).stem}.md")
        compiled.seconds[name] = summary.compile_seconds[adapter_id]
        compiled.tokens[name] = len(lm.tokenizer.encode(doc.text))
        compiled.bytes[name] = folder_bytes(knowledge.paths.adapters / adapter_id)
    return compiled


# -- answering -----------------------------------------------------------------------------------------------
def reply_words(reply: str) -> int:
    return len(reply.split())


def decode(lm: LoadedModel, messages: list[Message], max_new_tokens: int) -> tuple[str, float]:
    """One greedy reply and its seconds (one question at a time, as a user asks and as the routed path answers)."""
    from loracle.model.generate import GenerationConfig, generate_chat

    start = time.perf_counter()
    reply = generate_chat(lm, messages, GenerationConfig(max_new_tokens=max_new_tokens))
    return reply, time.perf_counter() - start


def record(item: QAItem, reply: str, seconds: float, cited: Sequence[str] = ()) -> dict[str, Any]:
    """One scored answer as JSON, with its length in words."""
    from dataclasses import asdict

    from loracle.eval.harness import score_reply

    result: QuestionResult = score_reply(item, reply, seconds, cited)
    return {**asdict(result), "words": reply_words(reply)}


def general_records(lm: LoadedModel, items: Sequence[GeneralItem], max_new_tokens: int) -> list[dict[str, Any]]:
    """Each general-set item answered by `lm` (its prompt as the bare question), scored."""
    from loracle.model.chat import question_messages

    out = []
    for item in items:
        reply, seconds = decode(lm, question_messages(item.prompt), max_new_tokens)
        out.append(general_record(item, reply, seconds))
    return out


def general_record(item: GeneralItem, reply: str, seconds: float, cited: Sequence[str] = ()) -> dict[str, Any]:
    from loracle.eval.scoring import is_correct

    return {
        "kind": item.kind,
        "question": item.question,
        "answers": list(item.answers),
        "reply": reply,
        "correct": is_correct(reply, item.answers),
        "seconds": seconds,
        "cited": list(cited),
    }


def peft_decode(peft_model: Any, lm: LoadedModel, messages: list[Message], max_new_tokens: int) -> tuple[str, float]:
    """One greedy reply by PEFT's own `generate` (how a prefix adapter loaded by plain PEFT answers), and its
    seconds."""
    import torch

    from loracle.model.chat import encode_chat, stop_token_ids

    start = time.perf_counter()
    ids = torch.tensor([encode_chat(lm.tokenizer, messages)])
    with torch.inference_mode():
        out = peft_model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=sorted(stop_token_ids(lm.tokenizer)),
            pad_token_id=lm.tokenizer.pad_token_id or 0,
        )
    reply = lm.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
    return reply, time.perf_counter() - start


def with_own_adapters(base: Any, folders: Sequence[Path], lm: LoadedModel) -> tuple[Any, LoadedModel]:
    """`base` with the adapters in `folders` loaded by plain PEFT (`PeftModel.from_pretrained`, then
    `load_adapter` for a two-hop question's second document) and all active: the PeftModel, and the same
    as a LoadedModel to decode with. PEFT activates one prefix adapter at a time: of prefix adapters, the
    first document's alone."""
    from peft import PeftModel

    from loracle.model.prefix import is_prefix_adapter

    if is_prefix_adapter(folders[0]):
        folders = folders[:1]
    names = [f"doc{i}" for i in range(len(folders))]
    peft_model = PeftModel.from_pretrained(base, str(folders[0]), adapter_name=names[0])
    for name, folder in zip(names[1:], folders[1:], strict=True):
        peft_model.load_adapter(str(folder), adapter_name=name)
    if len(names) > 1:
        peft_model.base_model.set_adapter(names)
    peft_model.eval()
    return peft_model, LoadedModel(peft_model, lm.tokenizer, lm.name, lm.source, lm.fingerprint)


def plain_peft(
    lm: LoadedModel,
    adapters: Path,
    ids: Mapping[str, str],
    items: Sequence[QAItem],
    general: Sequence[GeneralItem],
    max_new_tokens: int,
    say: Say,
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Each question answered with its own document's adapter(s) loaded by plain PEFT into a copy of the base
    model, and each document's adapter applied alone to every `general` item. Returns the question records
    (in `items` order) and the general records per document."""
    from loracle.model.chat import question_messages
    from loracle.model.prefix import is_prefix_adapter

    base = copy.deepcopy(lm.model)  # the user's own base model: the routed path's pool never touches it
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item.docs, []).append(index)
    for name in ids:
        groups.setdefault((name,), [])
    answers: dict[int, dict[str, Any]] = {}
    general_by_doc: dict[str, list[dict[str, Any]]] = {}
    for names, asked in groups.items():
        alone = general if len(names) == 1 else []
        say(f"plain PEFT {' + '.join(names)}: {len(asked)} questions, {len(alone)} general items")
        peft_model, peft_lm = with_own_adapters(base, [adapters / ids[name] for name in names], lm)
        prefix = is_prefix_adapter(adapters / ids[names[0]])
        answer: Callable[[list[Message]], tuple[str, float]] = (
            partial(peft_decode, peft_model, lm, max_new_tokens=max_new_tokens)  # loracle runs no PEFT prefix
            if prefix
            else partial(decode, peft_lm, max_new_tokens=max_new_tokens)
        )
        try:
            for index in asked:
                item = items[index]
                answers[index] = record(item, *answer(question_messages(item.question)))
            if alone:
                general_by_doc[names[0]] = [general_record(g, *answer(question_messages(g.prompt))) for g in alone]
        finally:
            # the LoRA layers out again (a prefix adds none): the next load starts from the bare base
            base = peft_model.get_base_model() if prefix else peft_model.unload()
    return [answers[i] for i in range(len(items))], general_by_doc


def routed(
    lm: LoadedModel,
    kb: Path,
    names: Mapping[str, str],
    items: Sequence[QAItem],
    general: Sequence[GeneralItem],
    max_new_tokens: int,
    say: Say,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every question, then every general item, through `KnowledgeBaseAnswerer` (`ask --kb`). `names` maps an
    adapter id to the name questions use. A question record says which documents answered (`cited`) and
    whether they include all of the question's own (`own_routed`)."""
    from loracle.asking import KnowledgeBaseAnswerer
    from loracle.model.generate import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens)
    questions, general_out = [], []
    with KnowledgeBaseAnswerer(lm, kb) as answerer:
        say(f"routed: {len(items)} questions, {len(general)} general items")
        for item in items:
            answer = answerer.ask(item.question, config)
            cited = [names.get(d.adapter, d.adapter) for d in answer.documents]
            questions.append(
                {**record(item, answer.text, answer.seconds, cited), "own_routed": set(item.docs) <= set(cited)}
            )
        for general_item in general:
            answer = answerer.ask(general_item.prompt, config)
            cited = [names.get(d.adapter, d.adapter) for d in answer.documents]
            general_out.append(general_record(general_item, answer.text, answer.seconds, cited))
    return questions, general_out


def base_right_general(
    lm: LoadedModel, docs: Mapping[str, Document], knowledge_max: int, reading_max: int, max_new_tokens: int
) -> tuple[list[GeneralItem], dict[str, Any]]:
    """The general-set items the base model gets right, answered one at a time as every path answers: the
    harness's selection (the first `knowledge_max` known facts, the first `reading_max` reading items whose
    paragraph is not in the corpus), then those of them the base model's unbatched reply gets right."""
    from loracle.eval.general import bundled_general
    from loracle.eval.harness import BaseModelAnswers, select_general

    offered = bundled_general(exclude_contexts={d.text for d in docs.values()})
    candidates, _ = select_general(BaseModelAnswers(lm, max_new_tokens), offered, knowledge_max, reading_max)
    answered = general_records(lm, candidates, max_new_tokens)
    kept = [item for item, answer in zip(candidates, answered, strict=True) if answer["correct"]]
    info = {"offered": len(offered), "candidates": len(candidates), "base_right": len(kept), "base": answered}
    return kept, info


# -- aggregation (pure) --------------------------------------------------------------------------------------
def path_summary(records: Sequence[Mapping[str, Any]], ceiling: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Right answers, their share of the ceiling's on the same questions (with the 95% paired bootstrap
    interval), mean token F1, median reply length in words and mean seconds per answer."""
    from loracle.eval.interval import ratio_interval

    right = [bool(r["correct"]) for r in records]
    reference = [bool(r["correct"]) for r in ceiling]
    if [r["question"] for r in records] != [r["question"] for r in ceiling]:
        raise ValueError("a path and the ceiling answered different questions")
    total = len(right)
    return {
        "right": sum(right),
        "total": total,
        "ratio": sum(right) / sum(reference) if any(reference) else None,
        "interval": ratio_interval(right, reference),
        "f1": sum(r["f1"] for r in records) / total if total else None,
        "median_words": statistics.median(r["words"] for r in records) if total else None,
        "seconds": sum(r["seconds"] for r in records) / total if total else None,
    }


def lost_share(runs: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Of general items the base model gets right, the share answered wrong, pooled over `runs` (one run per
    adapter applied, or the routed path's one run)."""
    asked = sum(len(run) for run in runs)
    lost = sum(not r["correct"] for run in runs for r in run)
    return {"lost": lost, "asked": asked, "share": lost / asked if asked else None}


def learning_summary(compiled: Compiled) -> dict[str, Any]:
    """Compile seconds and adapter bytes per document, and both scaled to a 300-token document."""
    docs = len(compiled.seconds)
    mean_tokens = sum(compiled.tokens.values()) / docs
    seconds = sum(compiled.seconds.values()) / docs
    mean_bytes = sum(compiled.bytes.values()) / docs
    return {
        "documents": docs,
        "mean_tokens": mean_tokens,
        "seconds_per_doc": seconds,
        "seconds_per_300_tokens": seconds * 300 / mean_tokens,
        "bytes_per_doc": mean_bytes,
        "mb_per_300_tokens": mean_bytes / 1e6 * 300 / mean_tokens,
    }


def _ratio_cell(summary: Mapping[str, Any]) -> str:
    if summary["ratio"] is None:
        return "n/a (ceiling 0)"
    interval = summary["interval"]
    return f"{summary['ratio']:.2f}" + (f" ({interval[0]:.2f}-{interval[1]:.2f})" if interval else "")


def summary_table(
    summaries: Mapping[str, Mapping[str, Any]],
    lost: Mapping[str, Mapping[str, Any]],
    learning: Mapping[str, Any],
    base_seconds: float,
) -> list[list[str]]:
    """One row per path (floor, ceiling, plain PEFT, routed) under COLUMNS; learning and size figures belong
    to the two adapter paths, general loss to the paths that have it."""
    rows = []
    for path in PATHS:
        s = summaries[path]
        seconds = f"{s['seconds']:.2f}"
        if path == "routed" and base_seconds:
            seconds += f" ({s['seconds'] / base_seconds:.1f}x base)"
        gone = lost.get(path)
        adapters = path in ("plain PEFT", "routed")
        rows.append(
            [
                path,
                f"{s['right']}/{s['total']}",
                _ratio_cell(s),
                f"{s['f1']:.3f}",
                f"{s['median_words']:g}",
                f"{gone['lost']}/{gone['asked']} = {gone['share']:.3f}" if gone and gone["asked"] else "",
                seconds,
                f"{learning['seconds_per_doc']:.1f}" if adapters else "",
                f"{learning['mb_per_300_tokens']:.2f} ({learning['bytes_per_doc'] / 1e6:.2f} per document)"
                if adapters
                else "",
            ]
        )
    return rows


def target_rows(
    label: str,
    summaries: Mapping[str, Mapping[str, Any]],
    lost: Mapping[str, Mapping[str, Any]],
    learning: Mapping[str, Any],
    base_seconds: float,
    own_routed: float | None,
) -> list[dict]:
    """The rows with the issue's targets (RESULTS.md's metric table)."""

    def at_least(value: float | None, bound: float) -> bool | None:
        return None if value is None else value >= bound

    def at_most(value: float | None, bound: float) -> bool | None:
        return None if value is None else value <= bound

    plain, route = summaries["plain PEFT"], summaries["routed"]
    time_ratio = route["seconds"] / base_seconds if base_seconds else None
    cell = _ratio_cell
    route_note = f"{route['right']}/{route['total']}; {cell(route)}"
    if own_routed is not None:
        route_note += f"; the question's own documents routed for {own_routed:.0%} of questions"
    return [
        row(f"{label}: plain PEFT accuracy / ceiling", _round(plain["ratio"]), "ratio", ">= 0.8",
            at_least(plain["ratio"], 0.8), f"{plain['right']}/{plain['total']}; {cell(plain)}"),
        row(f"{label}: plain PEFT median reply", plain["median_words"], "words", "<= 20",
            at_most(plain["median_words"], 20), f"token F1 {plain['f1']:.3f}"),
        row(f"{label}: plain PEFT general answers lost", _round(lost["plain PEFT"]["share"]), "ratio", "<= 0.05",
            at_most(lost["plain PEFT"]["share"], 0.05),
            f"{lost['plain PEFT']['lost']} of {lost['plain PEFT']['asked']} base-right answers, pooled over adapters"),
        row(f"{label}: routed accuracy / ceiling", _round(route["ratio"]), "ratio", ">= 0.85",
            at_least(route["ratio"], 0.85), route_note),
        row(f"{label}: routed forgetting", _round(lost["routed"]["share"]), "ratio", "<= 0.05",
            at_most(lost["routed"]["share"], 0.05),
            f"{lost['routed']['lost']} of {lost['routed']['asked']} base-right general answers lost"),
        row(f"{label}: routed answer time / base", _round(time_ratio), "ratio", "<= 2", at_most(time_ratio, 2),
            f"{route['seconds']:.2f} s against {base_seconds:.2f} s, same questions, one at a time"),
        row(f"{label}: learning time per 300-token document", round(learning["seconds_per_300_tokens"], 2), "s",
            "<= 60", at_most(learning["seconds_per_300_tokens"], 60),
            f"{learning['seconds_per_doc']:.2f} s per document of {learning['mean_tokens']:.0f} tokens on average"),
        row(f"{label}: adapter size per 300-token document", round(learning["mb_per_300_tokens"], 3), "MB",
            "<= 2", at_most(learning["mb_per_300_tokens"], 2),
            f"{learning['bytes_per_doc']:,.0f} bytes per document on average"),
    ]  # fmt: skip


def _round(value: float | None) -> float | str:
    return "n/a" if value is None else round(value, 3)


def learner_entries(
    learner: str,
    corpus: str,
    summaries: Mapping[str, Mapping[str, Any]],
    lost: Mapping[str, Mapping[str, Any]],
    learning: Mapping[str, Any],
    run: str,
) -> list[dict[str, str]]:
    """The plain-PEFT and routed suites as rows of RESULTS.md's learner x corpus table (common.TABLE_COLUMNS)."""
    ceiling = summaries["ceiling"]
    entries = []
    for path in ("plain PEFT", "routed"):
        s = summaries[path]
        interval = s["interval"]
        share = lost[path]["share"]
        entries.append(
            {
                "learner": f"{learner}: {path} (benchmarks.adapters)",
                "corpus": corpus,
                "accuracy": f"{s['right']}/{s['total']} against {ceiling['right']}/{ceiling['total']} = "
                + (f"{s['ratio']:.3f}" if s["ratio"] is not None else "n/a"),
                "interval": f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else "",
                "forgetting": f"{share:.3f}" if share is not None else "",
                "learn_s_300": f"{learning['seconds_per_300_tokens']:.1f}",
                "answer_s": f"{s['seconds']:.2f}",
                "bytes": f"{learning['bytes_per_doc']:,.0f} per document",
                "run": run,
            }
        )
    return entries


# -- the run -------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, choices=CORPORA)
    parser.add_argument("--learner", default="ttt", help="the compile learner (loracle compile --learner)")
    parser.add_argument("-o", "--option", action="append", default=[], help="learner option KEY=VALUE (repeat)")
    parser.add_argument("--docs", type=int, default=None, help="the first N documents (SQuAD: paragraphs)")
    parser.add_argument("--questions", type=int, default=None, help="at most N questions (SQuAD default 24)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="reply cap of every path")
    parser.add_argument("--general-knowledge", type=int, default=12, help="general-knowledge questions tried")
    parser.add_argument("--general-reading", type=int, default=6, help="reading-comprehension items tried")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="", help="write results/adapters-<corpus>-<tag>.json instead")
    args = parser.parse_args()
    commit = head_commit()  # the code this process runs

    from loracle.cli.adapter_commands import parse_options
    from loracle.errors import LoracleError
    from loracle.learners import learner_config

    try:
        options = parse_options(args.option)
        learner_config(args.learner, options)  # a bad option is refused before the model loads
        run(args, options, commit)
    except LoracleError as exc:
        parser.exit(2, f"error: {exc}\n")


def run(args: argparse.Namespace, options: dict[str, Any], commit: str) -> None:
    from loracle.config import load_config
    from loracle.errors import LoracleError
    from loracle.eval.harness import document_text, weights_checksum
    from loracle.model import load_model
    from loracle.model.chat import question_messages
    from loracle.runtime import configure_threads

    def say(message: str) -> None:
        print(f"[adapters {args.corpus}] {message}", flush=True)

    started = time.perf_counter()
    configure_threads(args.threads)
    machine = machine_info()  # after the threads are set: it records them
    questions = args.questions if args.questions is not None or args.corpus == "fictional" else 24
    inputs = load_corpus(args.corpus, args.docs, questions)
    docs, items, mnt = inputs.docs, inputs.items, args.max_new_tokens
    if not items:
        raise LoracleError(
            f"{args.corpus}: no questions on the first {args.docs} documents with --questions {questions}"
        )
    say(f"{len(docs)} documents, {len(items)} questions, learner {args.learner} {options or ''}")
    lm = load_model("embedded")
    with tempfile.TemporaryDirectory(prefix="loracle-adapters-") as tmp:
        kb = Path(tmp) / "kb"
        ids = fill_raw(kb, docs)
        before = weights_checksum(lm.model)
        compiled = compile_kb(lm, kb, ids, args.learner, options, say)
        restored = weights_checksum(lm.model) == before
        if not restored:
            say("WARNING: compiling left the base model changed; every path below is measured on a changed model")
        say("general set: the items the base model gets right")
        general, general_info = base_right_general(lm, docs, args.general_knowledge, args.general_reading, mnt)
        decode(lm, question_messages("Hello"), 4)  # warm-up: the first decode pays one-off set-up
        say(f"floor and ceiling: {len(items)} questions")
        records: dict[str, list[dict[str, Any]]] = {
            "floor": [record(q, *decode(lm, question_messages(q.question), mnt)) for q in items],
            "ceiling": [
                record(q, *decode(lm, question_messages(q.question, document_text([docs[d] for d in q.docs])), mnt))
                for q in items
            ],
        }
        records["plain PEFT"], plain_general = plain_peft(lm, kb / "adapters", ids, items, general, mnt, say)
        names = {adapter_id: name for name, adapter_id in ids.items()}
        records["routed"], routed_general = routed(lm, kb, names, items, general, mnt, say)
        ask_config = load_config(kb).ask.model_dump()

    summaries = {path: path_summary(records[path], records["ceiling"]) for path in PATHS}
    lost = {"plain PEFT": lost_share(list(plain_general.values())), "routed": lost_share([routed_general])}
    learning = learning_summary(compiled)
    base_seconds = summaries["floor"]["seconds"]
    own = [r["own_routed"] for r in records["routed"]]
    own_routed = sum(own) / len(own) if own else None
    label = f"{args.corpus}-{args.tag}" if args.tag else args.corpus
    when = machine["started"]  # the run's start, as in its section of RESULTS.md
    table = summary_table(summaries, lost, learning, base_seconds)
    rows = target_rows(label, summaries, lost, learning, base_seconds, own_routed)
    data = {
        "commit": commit,
        "corpus": args.corpus,
        "learner": args.learner,
        "options": options,
        "settings": {**vars(args), "questions": questions, "ask": ask_config},
        "machine_load_avg_1m_at_end": _load(),
        "seconds": time.perf_counter() - started,
        "base_restored_after_compile": restored,
        "summary_table": {"columns": list(COLUMNS), "rows": table},
        "learner_entries": learner_entries(
            args.learner, label, summaries, lost, learning, f"{commit or 'no commit'}, {when}"
        ),
        "summaries": summaries,
        "general_lost": lost,
        "learning": learning,
        "own_routed": own_routed,
        "documents": [
            {
                "name": n,
                "adapter": ids[n],
                "tokens": compiled.tokens[n],
                "compile_s": compiled.seconds[n],
                "bytes": compiled.bytes[n],
            }
            for n in docs
        ],
        "questions": [
            {
                "question": q.question,
                "docs": list(q.docs),
                "answers": list(q.answers),
                **{path: _answer(records[path][i]) for path in PATHS},
            }
            for i, q in enumerate(items)
        ],
        "general": {**general_info, "plain PEFT": plain_general, "routed": routed_general},
        "warnings": inputs.warnings,
    }
    path = write_result(f"adapters-{label}", rows, data, machine)
    say(f"{time.perf_counter() - started:.0f} s; wrote {path}")
    print("| " + " | ".join(COLUMNS) + " |")
    for cells in table:
        print("| " + " | ".join(cells) + " |")


def _answer(result: Mapping[str, Any]) -> dict[str, Any]:
    """A path's answer to one question, without what the question record already holds."""
    return {k: v for k, v in result.items() if k not in ("question", "docs", "answers")}


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


if __name__ == "__main__":
    main()
