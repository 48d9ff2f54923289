"""The playbook learner on the tiny model, with a scripted writer LLM (a test double behind the real LLM class)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from loracle.documents import Document
from loracle.errors import LoracleError
from loracle.learners import create_learner
from loracle.learners.playbook.book import Patch, PatchOp, Playbook, playbook_path
from loracle.learners.playbook.config import PlaybookConfig
from loracle.learners.playbook.learner import PlaybookLearner
from loracle.llm import LLM, Completion

DOC = Document.from_text("The Vellmar Bridge crosses the river Dunmere. It is 418 metres long.", "Vellmar Bridge")


class ScriptedBackend:
    """Replies with the next scripted text, whatever it is asked."""

    name = "scripted"

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def chat(self, messages, max_tokens: int, temperature: float) -> Completion:
        self.prompts.append(messages[-1]["content"])
        return Completion(self.replies.pop(0) if self.replies else "nothing useful", 10, 5)


def practice(*pairs: tuple[str, str]) -> str:
    return json.dumps({"questions": [{"question": q, "answer": a} for q, a in pairs]})


def learner(tiny_lm, replies: Sequence[str], kb_state: Path | None = None, **options) -> PlaybookLearner:
    config = PlaybookConfig(max_new_tokens=3, **options)
    return PlaybookLearner(tiny_lm, config, llm=LLM(ScriptedBackend(replies)), kb_state=kb_state)


def test_a_round_grows_the_playbook_by_patch_and_persists_it(tiny_lm, tmp_path: Path) -> None:
    replies = [
        practice(("Which river does the Vellmar Bridge cross?", "Dunmere"), ("How long is it?", "418 metres")),
        json.dumps({"lessons": ["The Vellmar Bridge crosses the river Dunmere.", "The bridge is 418 metres long."]}),
        json.dumps(
            {"operations": [{"op": "add", "section": "fact", "text": "The Vellmar Bridge crosses the Dunmere."}]}
        ),
    ]
    pb = learner(tiny_lm, replies, kb_state=tmp_path)
    report = pb.learn([DOC])
    assert [b.text for b in pb.playbook.bullets] == ["The Vellmar Bridge crosses the Dunmere."]
    assert report.details["llm_calls"] == 3 and report.details["bullets"] == 1
    on_disk = Playbook.read(playbook_path(tmp_path))
    assert on_disk.bullets[0].id == "b1"
    messages = pb.prompt_messages("Which river?")
    assert "The Vellmar Bridge crosses the Dunmere." in messages[0]["content"]


def test_patch_operations_update_remove_and_skip_unknown_ids() -> None:
    book = Playbook()
    book.apply(Patch(operations=[PatchOp(op="add", text="one"), PatchOp(op="add", text="two")]))
    done = book.apply(
        Patch(
            operations=[
                PatchOp(op="update", id="b1", text="one, corrected"),
                PatchOp(op="remove", id="b2"),
                PatchOp(op="remove", id="b99"),
                PatchOp(op="add", text="ONE,  corrected"),  # a duplicate of b1 after normalising
                PatchOp(op="add", text="   "),
            ]
        )
    )
    assert done == ["updated b1", "removed b2"]
    assert [(b.id, b.text) for b in book.bullets] == [("b1", "one, corrected")]
    book.apply(Patch(operations=[PatchOp(op="add", text="three")]))
    assert book.bullets[-1].id == "b3"  # ids are never reused


def test_cap_on_bullets_and_characters() -> None:
    book = Playbook(max_bullets=3, max_chars=10)
    book.apply(Patch(operations=[PatchOp(op="add", text=f"{i} is a long fact") for i in range(5)]))
    assert len(book.bullets) == 3
    assert all(len(b.text) <= 10 for b in book.bullets)
    assert [b.id for b in book.bullets] == ["b3", "b4", "b5"]  # the oldest made room


def test_bad_json_from_the_llm_never_corrupts_the_playbook(tiny_lm, tmp_path: Path) -> None:
    pb = learner(tiny_lm, [], kb_state=tmp_path)
    pb.playbook.apply(Patch(operations=[PatchOp(op="add", text="kept fact")]))
    pb.playbook.write(playbook_path(tmp_path))
    before = playbook_path(tmp_path).read_bytes()
    pb.llm = LLM(ScriptedBackend(["{not json", "still [not json"]))
    report = pb.learn([DOC])
    assert "practice questions" in report.details["log"][0]["error"]
    assert playbook_path(tmp_path).read_bytes() == before
    assert [b.text for b in pb.playbook.bullets] == ["kept fact"]


def test_unusable_curator_answer_adds_the_lessons_as_a_patch(tiny_lm) -> None:
    replies = [
        practice(("Which river does the Vellmar Bridge cross?", "Dunmere")),
        json.dumps({"lessons": ["The Vellmar Bridge crosses the river Dunmere."]}),
        "I will not answer in JSON",
        "still not JSON",
    ]
    pb = learner(tiny_lm, replies)
    pb.learn([DOC])
    assert [b.text for b in pb.playbook.bullets] == ["The Vellmar Bridge crosses the river Dunmere."]


def test_corrupt_playbook_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "playbook.json"
    path.write_text('{"bullets": [{"id": 3}]}', encoding="utf-8")
    with pytest.raises(LoracleError, match="not a readable playbook"):
        Playbook.read(path)


def test_save_load_round_trip_and_registry(tiny_lm, tmp_path: Path) -> None:
    pb = learner(tiny_lm, [])
    pb.playbook.apply(Patch(operations=[PatchOp(op="add", section="strategy", text="Answer with the name only.")]))
    pb.save(tmp_path / "ckpt")
    other = create_learner("playbook", tiny_lm, llm=LLM(ScriptedBackend([])))
    other.load(tmp_path / "ckpt")
    assert other.playbook == pb.playbook
    assert other.answer("Who?").text is not None
    other.reset()
    assert other.playbook.bullets == []


def test_playbook_show_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from loracle.cli import app

    book = Playbook()
    book.apply(Patch(operations=[PatchOp(op="add", section="strategy", text="Quote names exactly.")]))
    book.write(tmp_path / "playbook.json")
    shown = CliRunner().invoke(app, ["playbook", "show", "--path", str(tmp_path / "playbook.json")])
    assert shown.exit_code == 0 and "Quote names exactly." in shown.output and "b1" in shown.output


def test_playbook_show_reads_a_saved_checkpoint_says_where_none_is_and_refuses_others(tiny_lm, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from loracle.cli import app

    pb = learner(tiny_lm, [])
    pb.playbook.apply(Patch(operations=[PatchOp(op="add", section="strategy", text="Quote names exactly.")]))
    pb.save(tmp_path / "grown")
    shown = CliRunner().invoke(app, ["playbook", "show", "--load", str(tmp_path / "grown")])
    assert shown.exit_code == 0 and "Quote names exactly." in shown.output and "1/30 bullets" in shown.output
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "loracle.toml").write_text("", encoding="utf-8")
    nothing = CliRunner().invoke(app, ["playbook", "show", "--kb", str(tmp_path / "kb")])
    assert isinstance(nothing.exception, LoracleError) and "--load NAME" in str(nothing.exception)
    create_learner("context", tiny_lm).save(tmp_path / "other")
    refused = CliRunner().invoke(app, ["playbook", "show", "--load", str(tmp_path / "other")])
    assert isinstance(refused.exception, LoracleError) and "learner 'context', not 'playbook'" in str(refused.exception)


def test_a_silent_reflector_leaves_the_missed_practice_facts_as_lessons(tiny_lm) -> None:
    replies = [
        practice(("Which river does the Vellmar Bridge cross?", "Dunmere")),
        "no JSON here",
        "none here either",
        json.dumps({"operations": [{"op": "add", "text": "Which river does the Vellmar Bridge cross? Dunmere"}]}),
    ]
    pb = learner(tiny_lm, replies)
    report = pb.learn([DOC])
    assert "reflector_error" in report.details["log"][0]
    assert [b.text for b in pb.playbook.bullets] == ["Which river does the Vellmar Bridge cross? Dunmere"]


def test_practice_falls_back_to_plain_question_and_answer_lines(tiny_lm) -> None:
    replies = [
        "Sure! Here are questions.",
        "Questions:",
        "Q: Which river does it cross?\nA: Dunmere\n\nQ: How long?\nA: 418",
    ]
    pb = learner(tiny_lm, replies, questions_per_doc=2)
    items = pb._practice(DOC)
    assert [(i.question, i.answer) for i in items] == [("Which river does it cross?", "Dunmere"), ("How long?", "418")]
