"""Source prose as sentences with lines and links; which names get pages; links rewritten to file names."""

from __future__ import annotations

from loracle.wiki.linker import Linker
from loracle.wiki.names import find_names, link_target_name, mentioning
from loracle.wiki.sourcetext import plain_text, source_sentences

TEXT = """# Kestrel Valley Observatory

The Kestrel Valley Observatory is a research station on the slopes of Mount Orrin, in the country of
Velmora. It was founded by the astronomer [[Ilse Marrow|Marrow]].

- The observatory's main instrument is the **Harrow Telescope**.
- The second director, Oskar Tenby, moved the archive to the town of Lisk.

```
Code Block Is Not Prose.
```

| Table | Row |
In 1999 the Observatory staff found a comet on the Japanese island of Honshu. The University of the Arts in
Lisk keeps the archive; Each winter visitors come. The Falkland Islands, also known as the Falklands, are far.
"""


def test_sentences_keep_their_lines_and_links_and_leave_out_what_is_not_prose() -> None:
    sentences = source_sentences(TEXT)
    assert [s.line for s in sentences] == [3, 4, 6, 7, 14, 14, 15]
    assert sentences[1].plain == "It was founded by the astronomer Marrow."
    assert [(link.target, link.label) for link in sentences[1].links] == [("Ilse Marrow", "Marrow")]
    assert sentences[2].plain == "The observatory's main instrument is the Harrow Telescope."
    assert not any("Code Block" in s.plain or "Table" in s.plain for s in sentences)


def test_plain_text_reads_links_and_markup_as_a_reader_sees_them() -> None:
    assert plain_text("See [[A|b]], [[C]], ![[x.png]], [d](http://e.f), *g* and `h`[1].") == "See b, C, , d, g and h."


def test_names_are_whole_proper_names_never_fragments_function_words_or_demonyms() -> None:
    names = find_names(source_sentences(TEXT), ["Observatory", "Valley", "town of", "Honshu"], ["the comet"])
    assert names.entities[0] == "Ilse Marrow"  # linked by the author: first
    assert set(names.entities) == {
        "Ilse Marrow",
        "Kestrel Valley Observatory",
        "Mount Orrin",
        "Velmora",
        "Harrow Telescope",
        "Oskar Tenby",
        "Lisk",
        "Honshu",
        "University of the Arts",
        "Falkland Islands",
    }  # not "Observatory" (also written in lower case), "Japanese", "Each", "In", "Falklands" (an alias)
    assert names.aliases == {"Falkland Islands": ["Falklands"]}
    assert names.concepts == []  # "comet" is used once
    assert {"town of", "comet"} <= set(names.dropped)


def test_concepts_need_two_uses_and_come_from_the_model_or_links() -> None:
    text = "Corrosion eats hulls. The institute studies corrosion and [[seawater chemistry]]. Paint slows corrosion."
    names = find_names(source_sentences(text), [], ["corrosion", "hulls", "paint"])
    assert names.concepts == ["seawater chemistry", "corrosion"]  # linked first, then by use
    assert {"hulls", "paint"} <= set(names.dropped)


def test_mentions_find_a_name_its_aliases_and_links_to_it() -> None:
    sentences = source_sentences(TEXT)
    found = mentioning(["Ilse Marrow"], sentences)
    assert [s.line for s in found] == [4]  # by the link's target, though the text says "Marrow"
    assert [s.line for s in mentioning(["Falkland Islands", "Falklands"], sentences)] == [15]


def test_link_targets_name_pages_not_paths_or_attachments() -> None:
    assert link_target_name("People/Ilse Marrow.md") == "Ilse Marrow"
    assert link_target_name("diagram.png") == ""
    assert link_target_name("Node.js") == "Node.js"


def test_linker_points_quoted_links_at_file_names_or_unlinks_them() -> None:
    linker = Linker()
    linker.add("Ilse Marrow", "entities/ilse-marrow.md")
    linker.add("Kestrel Valley Observatory", "sources/kvo-summary.md")
    text = "By [[Ilse Marrow|Marrow]] at [[kestrel valley observatory#History]], not [[Nowhere]] ![[a.png]] here."
    assert linker.rewrite(text) == (
        "By [[ilse-marrow|Marrow]] at [[kvo-summary|kestrel valley observatory]], not Nowhere here."
    )
