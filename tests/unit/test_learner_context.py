import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.learners.context.config import ContextConfig
from loracle.learners.context.learner import ContextLearner, passage_bias, question_parts
from loracle.model import GenerationConfig, generate_chat, question_messages
from loracle.model.chat import stop_token_ids
from loracle.model.loader import LoadedModel
from loracle.sources import read_document

OBSERVATORY = (
    "# Kestrel Valley Observatory\n\nThe observatory was founded by Ilse Marrow in 1987.\n\n"
    "Its main instrument is the Harrow Telescope."
)
RIVER = "# Corra River\n\nThe Corra River powers a small hydroelectric plant.\nIt flows north to the sea."


class WordHashEmbedder:
    """A deterministic bag-of-words embedder standing in for MiniLM in unit tests."""

    name = "word-hash"
    dim = 256

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts):
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


def docs() -> list[Document]:
    return [
        Document.from_text(OBSERVATORY, "Kestrel Valley Observatory", doc_id="observatory"),
        Document.from_text(RIVER, "Corra River", doc_id="river"),
    ]


def learner(lm: LoadedModel, **options) -> ContextLearner:
    config = ContextConfig(**{"top_k": 1, "max_new_tokens": 6, **options})
    return ContextLearner(lm, config, embedder=WordHashEmbedder())


def test_retrieves_the_chunk_that_answers_and_cites_its_lines(tiny_lm: LoadedModel) -> None:
    ctx = learner(tiny_lm)
    report = ctx.learn(docs())
    assert report.documents == 2 and report.details["chunks"] >= 2
    hits = ctx.retrieve("Which river powers the hydroelectric plant?")
    assert [h.doc_id for h in hits] == ["river"]
    answer = ctx.answer("Who founded the observatory?")
    assert answer.citations and answer.citations[0].doc_id == "observatory"
    assert "Ilse Marrow" in answer.citations[0].snippet
    assert answer.citations[0].line is not None


def test_without_split_questions_the_best_top_k_hits_go_in_document_order_or_best_nearest_the_question(
    tiny_lm: LoadedModel,
) -> None:
    question = "Who founded the Kestrel Valley Observatory?"
    by_relevance = learner(tiny_lm, top_k=2, order="relevance", split_questions=False)
    by_relevance.learn(docs())
    ranked = by_relevance.index.search_chunks(question, n=2)
    assert len(ranked) == 2
    assert [h.doc_id for h in by_relevance.retrieve(question)] == [h.doc_id for h in ranked][::-1]
    in_order = learner(tiny_lm, top_k=2, split_questions=False)  # document order
    in_order.learn(docs())
    assert [h.doc_id for h in in_order.retrieve(question)] == sorted(h.doc_id for h in ranked)
    tight = learner(tiny_lm, top_k=2, split_questions=False, context_tokens=1)  # only the best fits
    tight.learn(docs())
    assert [h.doc_id for h in tight.retrieve(question)] == [ranked[0].doc_id]


def test_question_parts_are_cut_after_question_marks() -> None:
    assert question_parts("Who founded X? And when was Y built?") == ["Who founded X?", "And when was Y built?"]
    assert question_parts("What did St. Louis do in 1900?") == ["What did St. Louis do in 1900?"]
    assert question_parts("Who founded X? ?? ") == ["Who founded X?"]  # a part with no search word is dropped
    assert question_parts("?") == ["?"]


def test_with_split_questions_each_question_asked_gets_its_own_best_hit(tiny_lm: LoadedModel) -> None:
    split = learner(tiny_lm, top_k=2)  # split_questions is the default
    split.learn(docs())
    one_thing = "Who founded the Kestrel Valley Observatory and which telescope does the river plant power?"
    assert len(split.index.search_chunks(one_thing, n=2)) == 2
    assert [h.doc_id for h in split.retrieve(one_thing)] == ["observatory"]  # one question, one hit
    two_things = "Who founded the Kestrel Valley Observatory? And which river powers the hydroelectric plant?"
    assert [h.doc_id for h in split.retrieve(two_things)] == ["observatory", "river"]
    same_doc = "Who founded the Kestrel Valley Observatory? When was the observatory founded?"
    assert [h.doc_id for h in split.retrieve(same_doc)] == ["observatory"]  # the same hit is not put in twice
    capped = learner(tiny_lm, top_k=1, split_questions=True)
    capped.learn(docs())
    assert [h.doc_id for h in capped.retrieve(two_things)] == ["observatory"]  # top_k caps the hits


def test_a_question_unlike_anything_learned_gets_no_context(tiny_lm: LoadedModel) -> None:
    gated = learner(tiny_lm, min_similarity=0.3)
    gated.learn(docs())
    assert [h.doc_id for h in gated.retrieve("Who founded the observatory?")] == ["observatory"]
    unrelated = "What is the capital of France?"
    assert gated.index.search_chunks(unrelated, n=1), "the search alone still returns a chunk"
    assert gated.retrieve(unrelated) == []
    answer = gated.answer(unrelated)
    assert answer.citations == []
    base = generate_chat(tiny_lm, question_messages(unrelated), GenerationConfig(max_new_tokens=6))
    assert answer.text == base


def test_the_gate_reads_sentence_by_sentence_so_a_long_chunk_does_not_dilute_the_one_that_answers(
    tiny_lm: LoadedModel,
) -> None:
    filler = " ".join(f"Hall {i} holds {i} chairs of oak and pine wood." for i in range(12))
    long_doc = Document.from_text(f"{filler} Ilse Marrow founded the observatory.", "Halls", doc_id="halls")
    gated = learner(tiny_lm, min_similarity=0.5)
    gated.learn([long_doc])
    question = "Ilse Marrow founded what?"
    hits = gated.index.search_chunks(question, n=1)
    embedder = WordHashEmbedder()
    whole = float(np.dot(*embedder.encode([question, hits[0].text])))
    assert whole < 0.5 <= gated.gate_score(question, hits)
    assert [h.doc_id for h in gated.retrieve(question)] == ["halls"]
    assert gated.gate_score(question, []) == -1.0


def test_citation_lines_point_at_the_source_file(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    path = tmp_path / "river.md"
    path.write_text("---\ntitle: Corra River\n---\n" + RIVER, encoding="utf-8")
    ctx = learner(tiny_lm)
    ctx.learn([read_document(path)])
    citation = ctx.answer("What powers the hydroelectric plant?").citations[0]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert "Corra" in lines[citation.line - 1]


def test_relearning_a_document_replaces_its_chunks(tiny_lm: LoadedModel) -> None:
    ctx = learner(tiny_lm)
    ctx.learn(docs())
    changed = Document.from_text("# Corra River\n\nThe Corra River is now dry.", "Corra River", doc_id="river")
    ctx.learn([changed])
    river = [c for c in ctx.chunks.values() if c.doc_id == "river"]
    assert len(river) == 1 and "dry" in river[0].text
    assert "dry" in ctx.retrieve("Corra River hydroelectric")[0].text


def test_logit_bias_keeps_answers_to_the_retrieved_tokens(tiny_lm: LoadedModel) -> None:
    ctx = learner(tiny_lm, logit_bias=1000.0)
    ctx.learn(docs())
    hits = ctx.retrieve("Corra River")
    allowed = {t for h in hits for t in tiny_lm.tokenizer.encode(h.text, add_special_tokens=False)}
    ends = stop_token_ids(tiny_lm.tokenizer)
    assert ends and passage_bias(tiny_lm, [h.text for h in hits], 1000.0) == dict.fromkeys(allowed | ends, 1000.0)
    one_token = learner(tiny_lm, logit_bias=1000.0, max_new_tokens=1)  # (each token's bias is spent once used:
    one_token.learn(docs())  # test_generate's bias_once test)
    assert one_token.answer("Corra River").text in {tiny_lm.tokenizer.decode([t]).strip() for t in allowed} | {""}


def test_a_message_carrying_its_own_passage_is_biased_toward_like_a_retrieved_chunk(tiny_lm: LoadedModel) -> None:
    question = "Corra River"
    length = len(tiny_lm.tokenizer.encode(question, add_special_tokens=False))

    def biased(own_passage_tokens: int | None, passages: bool = True) -> list[str]:
        ctx = learner(tiny_lm, own_passage_tokens=own_passage_tokens)
        ctx.learn(docs())
        chunks = [h.text for h in ctx.retrieve(question)] if passages else []
        assert chunks or not passages
        return ctx.biased_texts(question, chunks)

    chunks = biased(None)
    assert biased(length + 1) == chunks  # a bare question: only the retrieved chunks
    assert biased(length) == [*chunks, question]  # long enough to count as a passage of its own
    assert biased(0, passages=False) == []  # nothing retrieved: the base model's reply, unbiased


def test_save_and_load_give_the_same_answers_without_re_embedding(tmp_path: Path, tiny_lm: LoadedModel) -> None:
    ctx = learner(tiny_lm)
    ctx.learn(docs())
    ctx.save(tmp_path / "ck")
    embedder = WordHashEmbedder()
    loaded = ContextLearner(tiny_lm, embedder=embedder)
    loaded.load(tmp_path / "ck")
    assert embedder.calls == 0
    for question in ("Who founded the observatory?", "Which river powers the plant?"):
        first, second = ctx.answer(question), loaded.answer(question)
        assert first.text == second.text
        assert first.citations == second.citations


def test_saving_over_a_folder_that_is_not_a_checkpoint_is_refused_and_keeps_it(
    tmp_path: Path, tiny_lm: LoadedModel
) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("my only copy", encoding="utf-8")
    ctx = learner(tiny_lm)
    ctx.learn(docs())
    with pytest.raises(LoracleError, match="not a loracle checkpoint; not replacing it"):
        ctx.save(notes)
    assert [p.name for p in notes.iterdir()] == ["a.md"]
    ctx.save(tmp_path / "ck")
    ctx.save(tmp_path / "ck")  # an earlier checkpoint is replaced


def test_an_empty_learner_answers_closed_book(tiny_lm: LoadedModel) -> None:
    answer = learner(tiny_lm).answer("Who founded the observatory?")
    assert answer.citations == []
