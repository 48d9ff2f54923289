from loracle.sources.sentences import sentence_spans, split_sentences, without_headings


def test_a_sentence_ends_at_a_stop_before_a_capital_or_a_digit() -> None:
    text = "The dam was built in 1932. It holds 4.5 km3! Why? 12 turbines run."
    assert split_sentences(text) == ["The dam was built in 1932.", "It holds 4.5 km3!", "Why?", "12 turbines run."]


def test_an_abbreviation_before_a_lowercase_word_does_not_end_the_sentence() -> None:
    text = "Rivers, e.g. the Rhine, flow north. Approx. five of them do."
    assert split_sentences(text) == ["Rivers, e.g. the Rhine, flow north.", "Approx. five of them do."]


def test_closing_quotes_and_brackets_stay_with_their_sentence() -> None:
    text = 'It was called "Franks." The name stuck (for a while.) Then it changed.'
    assert split_sentences(text) == ['It was called "Franks."', "The name stuck (for a while.)", "Then it changed."]


def test_cjk_sentences_end_without_a_space() -> None:
    assert split_sentences("東京は大きい。大阪も大きい！本当？") == ["東京は大きい。", "大阪も大きい！", "本当？"]


def test_spans_point_into_the_text_and_leave_out_the_space_between() -> None:
    text = "  First one.   Second one.\n"
    assert [text[a:b] for a, b in sentence_spans(text)] == ["  First one.", "Second one."]
    assert sentence_spans("   ") == []


def test_short_fragments_are_dropped_by_word_count() -> None:
    assert split_sentences("Yes. The plant has three turbines.", min_words=3) == ["The plant has three turbines."]


def test_headings_are_left_out() -> None:
    assert without_headings("# Title\nBody.\n  ## Sub\nMore.") == "Body.\nMore."
