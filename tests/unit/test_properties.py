"""Properties that hold for any input (hypothesis): slugs, frontmatter, wikilinks, and merging loracle's updates
into a page a person edited."""

from __future__ import annotations

import string
from pathlib import PurePosixPath, PureWindowsPath

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loracle.documents import MAX_SLUG_LEN, extract_wikilinks, slugify
from loracle.sources.files import split_frontmatter
from loracle.wiki.links import find_links
from loracle.wiki.merge import MergeNotes, merge_frontmatter, merge_list_section, merge_prose_section
from loracle.wiki.pages import Page, Section, parse_page
from loracle.wiki.state import WikiState

settings.register_profile("loracle", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("loracle")

# --- slugs ---


@given(st.text())
def test_a_slug_is_never_empty_and_always_a_safe_file_name(name: str) -> None:
    slug = slugify(name)
    assert slug and len(slug) <= MAX_SLUG_LEN
    assert slug not in (".", "..") and not slug.startswith(".")
    assert "/" not in slug and "\\" not in slug and "\x00" not in slug and ":" not in slug
    assert PurePosixPath(slug).name == slug and PureWindowsPath(slug).name == slug
    assert slug.split(".")[0] not in ("con", "prn", "aux", "nul")


@given(st.text())
def test_slugs_are_stable_and_idempotent(name: str) -> None:
    assert slugify(name) == slugify(name)
    assert slugify(slugify(name)) == slugify(name)


@given(st.text(), st.integers(min_value=10, max_value=200))
def test_a_bounded_slug_keeps_its_bound(name: str, max_len: int) -> None:
    assert 0 < len(slugify(name, max_len)) <= max(max_len, len("untitled-") + 8)


# --- frontmatter ---

yaml_scalars = st.one_of(
    st.text(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
frontmatter = st.dictionaries(
    st.text(min_size=1),
    st.one_of(yaml_scalars, st.lists(st.text(), max_size=4)),
    min_size=1,
    max_size=6,
)
line = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40)


@given(frontmatter, st.lists(line, max_size=5))
@example({"title": "a\x85b", "summary": "c\u2028d"}, [])  # Unicode line breaks once became spaces
@example({"\xa0": ""}, [])  # a no-break space alone as a key once lost the whole frontmatter
@example({"0": 5e-324, "1": 1e20}, [])  # floats written without a dot were text to a YAML 1.1 reader
def test_frontmatter_survives_a_page_round_trip(meta: dict, body_lines: list[str]) -> None:
    page = Page(dict(meta), [Section("", "\n".join(body_lines))])
    text = page.render()
    assert parse_page(text).frontmatter == meta
    assert split_frontmatter(text, PurePosixPath("page.md"))[0] == meta  # what sources and search read


@given(st.text())
def test_parsing_then_rendering_any_text_is_stable(text: str) -> None:
    once = parse_page(text).render()
    assert parse_page(once).render() == once


heading = st.text(alphabet=string.ascii_letters + string.digits + " ,'-", min_size=1, max_size=20).map(str.strip)
prose = st.lists(st.text(alphabet=string.ascii_letters + " .,:'[]|-", max_size=30), max_size=4).map("\n".join)


@given(st.lists(st.tuples(heading.filter(bool), prose), max_size=4, unique_by=lambda s: s[0].lower()))
def test_sections_survive_a_round_trip(sections: list[tuple[str, str]]) -> None:
    page = Page({"title": "T"}, [Section(h, t.strip("\n")) for h, t in sections])
    again = parse_page(page.render())
    # what a section holds comes back, but for blank lines around it and spaces at its very end
    assert [(s.heading, s.text) for s in again.sections] == [(s.heading, s.text.rstrip()) for s in page.sections]


# --- wikilinks ---

target_text = st.text(alphabet=st.characters(blacklist_characters="[]|#^`\n\r\\"), min_size=1).filter(str.strip)
label_text = st.text(alphabet=st.characters(blacklist_characters="[]`\n\r\\"))


@given(target_text, st.one_of(st.none(), target_text), st.one_of(st.none(), label_text), st.text(alphabet="ab \n"))
@example("0\x1e", None, None, "")  # a record separator once split the line, and the link, in two
def test_a_written_wikilink_is_found_as_written(target: str, head: str | None, label: str | None, around: str) -> None:
    link = f"[[{target}" + (f"#{head}" if head else "") + (f"|{label}" if label is not None else "") + "]]"
    [found] = find_links(f"{around}{link}{around}")
    assert found.target == target.strip() and found.heading == (head or "").strip()
    assert found.label == (label or "").strip() and not found.embed
    assert found.line == around.count("\n") + 1
    assert extract_wikilinks(link) == [target.strip()]


@given(target_text)
def test_links_in_code_are_not_links(target: str) -> None:
    assert find_links(f"```\n[[{target}]]\n```\nand `[[{target}]]` inline") == []


@given(st.text())
def test_link_parsing_never_fails(text: str) -> None:
    for link in find_links(text):
        assert "\n" not in link.target and link.line >= 1


# --- merging loracle's updates into a person's page ---

bullets = st.lists(st.text(alphabet=string.ascii_letters + " ", min_size=1, max_size=12).map(lambda s: f"- {s}"))


@given(mine=bullets, ours_before=bullets, ours_now=bullets, others=bullets)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_list_merging_never_drops_a_persons_lines(
    mine: list[str], ours_before: list[str], ours_now: list[str], others: list[str]
) -> None:
    state = WikiState()
    state.record("p.md", "Mentions", "raw/a.md", ours_before)
    state.record("p.md", "Mentions", "raw/b.md", others)
    kept = [line for line in mine + others if line not in ours_before]  # (a line loracle wrote is loracle's)
    page = Page({}, [Section("Mentions", "\n".join(mine + others + ours_before))])
    merge_list_section(page, "p.md", "Mentions", "raw/a.md", ours_now, state)
    merged = page.section("Mentions").text.splitlines()
    assert [line for line in merged if line in set(kept)] == kept  # every one still there, in its order
    assert set(ours_now) <= set(merged)
    assert state.lines_written("p.md", "Mentions", "raw/a.md") == ours_now


@given(
    meta=st.dictionaries(st.sampled_from(["title", "type", "summary", "aliases", "tags", "mine"]), yaml_scalars),
    fields=st.dictionaries(st.sampled_from(["title", "type", "mine"]), st.text()),
    lists=st.dictionaries(st.sampled_from(["aliases", "tags", "sources"]), st.lists(st.text(), max_size=3)),
    theirs=st.dictionaries(st.sampled_from(["aliases", "tags"]), st.lists(st.text(min_size=1), max_size=3)),
)
def test_frontmatter_merging_keeps_every_key_and_value_a_person_set(
    meta: dict, fields: dict, lists: dict, theirs: dict
) -> None:
    original = {**meta, **theirs}
    page = Page(dict(original), [])
    merge_frontmatter(page, fields, lists)
    assert list(page.frontmatter)[: len(original)] == list(original)  # their keys first, in their order

    def items(value: object) -> list:
        return value if isinstance(value, list) else ([value] if value else [])

    for key, value in original.items():
        if key in lists:  # a list field: what the person had comes first, as they wrote it
            assert items(page.frontmatter[key])[: len(items(value))] == items(value)
        elif value not in (None, ""):
            assert page.frontmatter[key] == value
    for key, values in lists.items():
        assert {v.lower() for v in values} <= {str(v).lower() for v in items(page.frontmatter.get(key))}


@given(theirs=prose, written=prose, new=prose)
def test_a_prose_section_a_person_changed_is_kept(theirs: str, written: str, new: str) -> None:
    state = WikiState()
    state.record("p.md", "Summary", "*", written.splitlines())
    page = Page({}, [Section("Summary", theirs)])
    notes = MergeNotes()
    merge_prose_section(page, "p.md", "Summary", new, state, notes)
    if theirs.strip() not in ("", written.strip(), new.strip()):
        assert page.section("Summary").text == theirs and notes.kept == ["p.md#Summary"]
    else:
        assert page.section("Summary").text == new.strip("\n") and not notes.kept
