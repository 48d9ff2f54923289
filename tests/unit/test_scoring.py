from pathlib import Path

import pytest

from loracle.errors import LoracleError
from loracle.eval.qa import load_qa
from loracle.eval.scoring import is_correct, token_f1


def test_is_correct_is_case_and_punctuation_insensitive() -> None:
    assert is_correct("It was founded by ILSE MARROW.", ["Ilse Marrow"])
    assert not is_correct("It was founded by Ilse Marrowson", ["Ilse Marrow"])
    assert is_correct("In 1987, I think", ["1987"])
    assert not is_correct("anything", [""])


def test_token_f1() -> None:
    assert token_f1("Ilse Marrow", ["Ilse Marrow"]) == 1.0
    assert 0 < token_f1("the founder was Ilse", ["Ilse Marrow"]) < 1
    assert token_f1("nothing", ["Ilse Marrow"]) == 0.0


def test_load_qa_sample_and_errors(sample_dir: Path, tmp_path: Path) -> None:
    items = load_qa(sample_dir / "questions.jsonl")
    assert len(items) >= 5 and all(i.answers for i in items)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"doc": "a.md", "q": "x", "a": ["y"]}\n{"q": "missing doc"}\n')
    with pytest.raises(LoracleError, match=r"bad.jsonl:2"):
        load_qa(bad)
    two = tmp_path / "two.jsonl"
    two.write_text('{"doc": "a.md+b.md", "q": "x", "a": "y"}\n')
    assert load_qa(two)[0].docs == ("a.md", "b.md")
