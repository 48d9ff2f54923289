import pytest

from loracle.eval.interval import ratio_interval


def test_the_interval_holds_the_measured_ratio_and_narrows_with_more_questions() -> None:
    few = ratio_interval([True] * 9 + [False] * 11, [True] * 10 + [False] * 10)
    many = ratio_interval([True] * 90 + [False] * 110, [True] * 100 + [False] * 100)
    assert few is not None and many is not None
    assert few[0] <= 0.9 <= few[1] and many[0] <= 0.9 <= many[1]
    assert many[1] - many[0] < few[1] - few[0]
    assert ratio_interval([True, False], [True, False]) == ratio_interval([True, False], [True, False])


def test_no_interval_without_a_ratio_and_unpaired_results_are_refused() -> None:
    assert ratio_interval([True, True], [False, False]) is None
    assert ratio_interval([True], [True]) is None  # one question: nothing to resample
    with pytest.raises(ValueError, match="differ in length"):
        ratio_interval([True], [True, False])
