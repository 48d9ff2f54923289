"""Health checks for a wiki: links, orphans, the index, missing pages, duplicates, contradictions, stale claims.

Deterministic checks run on the link graph. Contradictions are found in two steps: cheap candidate pairs
(claims about the same page, from different pages or sources, that both state numbers or share many
words), then the LLM judges each pair; every finding keeps its evidence (page, line, text).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from itertools import combinations

from pydantic import BaseModel

from loracle.atomic import write_text_atomic
from loracle.confine import read_text_in, real_inside
from loracle.documents import slugify
from loracle.errors import LoracleError
from loracle.kb import KBPaths
from loracle.llm import LLM, JSONRequest
from loracle.wiki.extract import content_words
from loracle.wiki.index import rebuild_index, unindexed_pages
from loracle.wiki.links import LINK_RE, SPECIAL_PAGES, LinkGraph, PageInfo
from loracle.wiki.state import load_state, save_state, wiki_lock

KINDS = (
    "broken_link",
    "broken_heading",
    "orphan",
    "missing_from_index",
    "missing_page",
    "duplicate",
    "unsupported",
    "contradiction",
    "superseded",
)
#: the kinds that fail `loracle lint` (exit 1): the wiki is wrong, not merely thin
ERRORS = frozenset(("broken_link", "broken_heading", "missing_from_index", "duplicate", "unsupported", "contradiction"))
_DIGITS_RE = re.compile(r"\d+(?:[.,]\d+)?")
# Two to four capitalised words in mid-sentence (after a lowercase word or a comma): a name, not a sentence start.
_CAPITALISED_RE = re.compile(r"(?<=[a-z,] )([A-Z][a-z]+(?: [A-Z][a-z]+){1,3})\b")
_CODE_RE = re.compile(r"```.*?```|~~~.*?~~~|`[^`\n]*`", re.DOTALL)


@dataclass
class Finding:
    kind: str
    page: str  # relative to wiki/
    message: str
    evidence: list[str] = field(default_factory=list)
    fixed: bool = False


@dataclass
class LintReport:
    pages: int = 0
    links: int = 0
    links_resolved: int = 0
    findings: list[Finding] = field(default_factory=list)
    pairs_judged: int = 0
    llm_calls: int = 0
    notes: list[str] = field(default_factory=list)

    def by_kind(self) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for finding in self.findings:
            counts[finding.kind] += 1
        return counts

    @property
    def errors(self) -> list[Finding]:
        """Findings of an error kind that are not fixed."""
        return [f for f in self.findings if f.kind in ERRORS and not f.fixed]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.kind not in ERRORS and not f.fixed]

    def flagged_pages(self) -> set[str]:
        return {f.page for f in self.findings if not f.fixed}

    def to_json(self) -> dict:
        return {
            "pages": self.pages,
            "links": self.links,
            "links_resolved": self.links_resolved,
            "flagged_pages": len(self.flagged_pages()),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "counts": self.by_kind(),
            "pairs_judged": self.pairs_judged,
            "llm_calls": self.llm_calls,
            "notes": self.notes,
            "findings": [{**asdict(f), "severity": severity(f.kind)} for f in self.findings],
        }


def severity(kind: str) -> str:
    return "error" if kind in ERRORS else "warning"


class Verdict(BaseModel):
    contradiction: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Claim:
    page: str
    line: int
    text: str
    source: str  # the raw file or page the claim comes from


def lint(kb: KBPaths, llm: LLM | None = None, fix: bool = False, max_pairs: int = 12) -> LintReport:
    """Check the wiki; with `fix`, repair what has one right answer (links by name, the index) and say so."""
    if not kb.wiki.is_dir():
        raise LoracleError(f"{kb.wiki}: no wiki folder (run `loracle init {kb.root}`)")
    with wiki_lock(kb):
        graph = LinkGraph(kb.wiki)
        report = LintReport(pages=len(graph.content_pages()))
        report.links_resolved, report.links = graph.link_counts()
        report.findings += check_links(graph)
        report.findings += check_orphans(graph)
        report.findings += check_index(graph)
        report.findings += check_missing_pages(graph)
        report.findings += check_duplicates(graph)
        report.findings += check_unsupported(graph)
        if llm is not None:
            before = llm.usage()
            judged, findings = check_contradictions(kb, graph, llm, max_pairs)
            report.pairs_judged, report.llm_calls = judged, (llm.usage() - before).calls
            report.findings += findings
        else:
            report.notes.append("contradictions not checked (no LLM)")
        if fix:
            _fix(kb, graph, report)
    return report


# --- deterministic checks ---


def check_links(graph: LinkGraph) -> list[Finding]:
    findings = []
    for rel in graph.pages:
        for link, dest in graph.outgoing(rel):
            where = f"{rel}:{link.line}"
            if dest is None:
                findings.append(Finding("broken_link", rel, f"[[{link.target}]] points at no page", [where]))
            elif link.heading and not link.heading.startswith("^") and dest in graph.pages:
                wanted = _heading_key(link.heading.split("#")[-1])
                if wanted not in {_heading_key(h) for h in graph.pages[dest].headings}:
                    message = f"[[{link.target}#{link.heading}]]: {dest} has no such heading"
                    findings.append(Finding("broken_heading", rel, message, [where]))
    return findings


def _heading_key(heading: str) -> str:
    return re.sub(r"[^\w]+", " ", heading.lower()).strip()


def check_orphans(graph: LinkGraph) -> list[Finding]:
    """Content pages no other page links to (links from index.md and log.md do not count). A source's summary
    page is the wiki's way in to that source, listed in the index by design: it is no orphan."""
    inbound = graph.backlinks()
    findings = []
    for page in graph.content_pages():
        if page.type == "source":
            continue
        if not (inbound.get(page.rel, set()) - set(SPECIAL_PAGES)):
            findings.append(Finding("orphan", page.rel, "no other page links here"))
    return findings


def check_index(graph: LinkGraph) -> list[Finding]:
    return [Finding("missing_from_index", rel, "not listed in index.md") for rel in unindexed_pages(graph)]


def check_missing_pages(graph: LinkGraph, min_pages: int = 2, min_mentions: int = 3) -> list[Finding]:
    """Names linked (unresolved) from several pages, or written capitalised on many pages, that have no page."""
    linked: dict[str, set[str]] = {}
    for rel, page in graph.pages.items():
        for link in page.links:
            if link.target and not link.embed and graph.resolve(link.target) is None:
                linked.setdefault(link.target.strip().lower(), set()).add(rel)
    findings = [
        Finding(
            "missing_page",
            sorted(pages)[0],
            f"{name!r} is linked from {len(pages)} pages but has no page",
            sorted(pages),
        )
        for name, pages in sorted(linked.items())
        if len(pages) >= min_pages
    ]
    named = {name.lower() for p in graph.content_pages() for name in (p.title, p.stem, *p.aliases)}
    mentioned: dict[str, set[str]] = {}
    for page in graph.content_pages():
        body = LINK_RE.sub(" ", _CODE_RE.sub(" ", page.text))
        for phrase in {m.group(1) for m in _CAPITALISED_RE.finditer(body)}:
            mentioned.setdefault(phrase, set()).add(page.rel)
    for phrase, pages in sorted(mentioned.items()):
        known = phrase.lower() in named or phrase.lower() in linked or graph.resolve(phrase) is not None
        if len(pages) >= min_mentions and not known:
            findings.append(
                Finding(
                    "missing_page",
                    sorted(pages)[0],
                    f"{phrase!r} is named on {len(pages)} pages without a page",
                    sorted(pages)[:5],
                )
            )
    return findings


def _dup_key(name: str) -> str:
    key = re.sub(r"[^\w]+", "", name.casefold())
    return key[:-1] if key.endswith("s") and len(key) > 3 else key


def check_duplicates(graph: LinkGraph, ratio: float = 0.92) -> list[Finding]:
    """Pages whose titles or aliases are the same name (case, spacing, plural aside) or nearly the same.

    A source's summary page and the entity or concept page of the same name are two kinds of page meant to
    coexist (what one source says, and what every source says about the thing), so they are no pair.
    """
    pages = graph.content_pages()
    owners: dict[str, set[str]] = {}
    for page in pages:
        for name in {page.title, page.stem, *page.aliases}:
            key = _dup_key(name)
            if len(key) >= 3:
                owners.setdefault(key, set()).add(page.rel)
    pairs: dict[tuple[str, str], str] = {}
    for key, rels in owners.items():
        for a, b in combinations(sorted(rels), 2):
            pairs.setdefault((a, b), f"both are named {key!r}")
    by_prefix: dict[str, list[PageInfo]] = {}
    for page in pages:
        key = _dup_key(page.title)
        if len(key) >= 6:
            by_prefix.setdefault(key[:3], []).append(page)
    for bucket in by_prefix.values():
        for a, b in combinations(sorted(bucket, key=lambda p: p.rel), 2):
            score = difflib.SequenceMatcher(None, _dup_key(a.title), _dup_key(b.title)).ratio()
            if score >= ratio:
                pairs.setdefault((a.rel, b.rel), f"near-identical titles ({score:.2f})")
    return [
        Finding(
            "duplicate",
            a,
            f"{a} and {b} look like the same thing: {why}",
            [f"{a}: {graph.pages[a].title}", f"{b}: {graph.pages[b].title}"],
        )
        for (a, b), why in sorted(pairs.items())
        if (graph.pages[a].type == "source") == (graph.pages[b].type == "source")
    ]


def check_unsupported(graph: LinkGraph) -> list[Finding]:
    return [
        Finding("unsupported", p.rel, "its source was removed; its claims are no longer supported")
        for p in graph.content_pages()
        if p.unsupported
    ]


# --- contradictions: cheap candidates, then the LLM judges ---


def _claims(page: PageInfo) -> list[Claim]:
    """Bullet and prose lines of a page, each with the source it cites (a `raw/...:N` ref or a summary link)."""
    claims = []
    in_fence = False
    lines = page.text.splitlines()
    sources = page.frontmatter.get("sources")
    page_sources = [str(x) for x in sources] if isinstance(sources, list) else []
    body_start = _body_start(lines)
    for number, line in enumerate(lines, start=1):
        if number <= body_start:
            continue
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        text = line.strip()
        if in_fence or text.startswith(("#", ">", "|", "<!--")):
            continue
        if len(content_words(re.sub(r"`[^`]*`", " ", LINK_RE.sub(" ", text)))) < 3:  # a list of links is no claim
            continue
        ref = re.search(r"`([^`]+?):\d+`", text)
        source = ref.group(1) if ref else (page_sources[0] if len(page_sources) == 1 else page.rel)
        claims.append(Claim(page.rel, number, text, source))
    return claims


def _body_start(lines: list[str]) -> int:
    """How many leading lines are frontmatter (0 when there is none)."""
    if not lines or lines[0].strip() != "---":
        return 0
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            return index + 1
    return 0


def candidate_pairs(graph: LinkGraph, limit: int) -> list[tuple[Claim, Claim]]:
    """Pairs of claims about the same page from different sources that both state numbers or share words.

    Claims about a page are its own lines (one per citing source on entity pages) and the lines on other
    pages that link to it.
    """
    about: dict[str, list[Claim]] = {}
    for page in graph.content_pages():
        for claim in _claims(page):
            about.setdefault(page.rel, []).append(claim)
            for match in LINK_RE.finditer(claim.text):
                dest = graph.resolve(match.group(2))
                if dest and dest != page.rel:
                    about.setdefault(dest, []).append(claim)
    scored: list[tuple[float, Claim, Claim]] = []
    seen: set[tuple[frozenset, frozenset]] = set()
    for claims in about.values():
        for a, b in combinations(claims, 2):
            if a.source == b.source or a.text == b.text:
                continue
            words_a, words_b = _core(a.text), _core(b.text)
            key = (frozenset((a.source, b.source)), frozenset((words_a, words_b)))
            if key in seen:  # the same two claims, quoted on another page
                continue
            seen.add(key)
            shared = len(words_a & words_b)
            numbers_a, numbers_b = set(_DIGITS_RE.findall(a.text)), set(_DIGITS_RE.findall(b.text))
            differing_numbers = bool(numbers_a and numbers_b and numbers_a != numbers_b)
            if shared >= 3 or (shared >= 1 and differing_numbers):
                scored.append((shared / len(words_a | words_b) + differing_numbers, a, b))  # overlap, numbers first
    scored.sort(key=lambda item: -item[0])
    return [(a, b) for _, a, b in scored[:limit]]


def check_contradictions(kb: KBPaths, graph: LinkGraph, llm: LLM, max_pairs: int) -> tuple[int, list[Finding]]:
    findings = []
    pairs = candidate_pairs(graph, max_pairs)
    for a, b in pairs:
        conflict = numeric_conflict(a.text, b.text)
        if conflict:  # the same statement with other numbers: no judge needed
            findings.append(_contradiction(kb, a, b, conflict))
            continue
        try:
            verdict = llm.ask_json(verdict_request(a.text, b.text))
        except LoracleError:
            continue
        if verdict.contradiction:
            findings.append(_contradiction(kb, a, b, verdict.reason))
    return len(pairs), findings


def verdict_request(a: str, b: str) -> JSONRequest[Verdict]:
    """Ask the judge whether two claims (markdown) contradict each other."""
    question = (
        f"Statement A: {_plain(a)}\nStatement B: {_plain(b)}\n\n"
        "Do A and B contradict each other (they cannot both be true)?"
    )
    return JSONRequest([{"role": "user", "content": question}], Verdict, max_tokens=80, max_chars=120)


def numeric_conflict(a: str, b: str) -> str:
    """'1987 vs 1991' when two claims say the same words with different numbers, else ''."""
    numbers_a, numbers_b = _DIGITS_RE.findall(_claim_text(a)), _DIGITS_RE.findall(_claim_text(b))
    if not numbers_a or not numbers_b or set(numbers_a) == set(numbers_b):
        return ""
    words_a, words_b = _core(_DIGITS_RE.sub(" ", a)), _core(_DIGITS_RE.sub(" ", b))
    if len(words_a) < 3 or len(words_a & words_b) / len(words_a | words_b) < 0.8:
        return ""
    return f"the same statement with different numbers: {', '.join(numbers_a)} vs {', '.join(numbers_b)}"


def _claim_text(text: str) -> str:
    return re.sub(r"`[^`]*`", " ", _plain(text))


def _contradiction(kb: KBPaths, a: Claim, b: Claim, reason: str) -> Finding:
    evidence = [f"{a.page}:{a.line}: {a.text}", f"{b.page}:{b.line}: {b.text}"]
    older, newer = _order_by_date(kb, a, b)
    if older is not None and newer is not None:
        message = f"{older.source} is superseded by the newer {newer.source}: {reason}".rstrip(": ")
        return Finding("superseded", older.page, message, evidence)
    return Finding("contradiction", a.page, f"{a.source} and {b.source} disagree: {reason}".rstrip(": "), evidence)


def _core(text: str) -> frozenset[str]:
    """A claim's words without its citation: the leading `[[source]]:` link and the `raw:line` ref."""
    text = re.sub(r"^[-*]\s*\[\[[^\]]*\]\]:\s*", "", text.strip())
    return frozenset(content_words(re.sub(r"`[^`]*`", " ", _plain(text))))


def _plain(text: str) -> str:
    return LINK_RE.sub(lambda m: m.group(4) or m.group(2), text).lstrip("-* ")


def _order_by_date(kb: KBPaths, a: Claim, b: Claim) -> tuple[Claim | None, Claim | None]:
    """(older, newer) when both claims come from raw sources whose frontmatter gives different dates."""
    from loracle.sources import read_document

    dates = []
    for claim in (a, b):
        raw = real_inside(kb.root / claim.source, kb.raw)
        if raw is None or not raw.is_file():
            return None, None
        try:
            meta = read_document(raw).frontmatter
        except LoracleError:
            return None, None
        date = meta.get("date") or meta.get("updated")
        if not date:
            return None, None
        dates.append(str(date))
    if dates[0] == dates[1]:
        return None, None
    return (a, b) if dates[0] < dates[1] else (b, a)


# --- fixes with one right answer ---


def _fix(kb: KBPaths, graph: LinkGraph, report: LintReport) -> None:
    by_slug = {slugify(p.stem): p for p in graph.content_pages()}
    rewrites: dict[str, dict[str, str]] = {}
    for finding in report.findings:
        if finding.kind != "broken_link":
            continue
        target = finding.message.split("]]", 1)[0].removeprefix("[[")
        match = by_slug.get(slugify(target))
        if match is not None:
            rewrites.setdefault(finding.page, {})[target] = match.stem
            finding.fixed = True
            finding.message += f" (fixed: now [[{match.stem}]])"
    for rel, mapping in rewrites.items():
        path = kb.wiki / rel
        text = read_text_in(path, kb.wiki)

        def repl(m: re.Match[str], mapping: dict[str, str] = mapping) -> str:
            target = m.group(2).strip()
            if target not in mapping:
                return m.group(0)
            heading = f"#{m.group(3)}" if m.group(3) else ""
            label = m.group(4) or target
            return f"{m.group(1)}[[{mapping[target]}{heading}|{label}]]"

        write_text_atomic(path, LINK_RE.sub(repl, text))
    if any(f.kind in ("missing_from_index", "orphan") for f in report.findings) and "index.md" in graph.pages:
        state = load_state(kb)
        rebuild_index(kb, state)
        save_state(kb, state)
        for finding in report.findings:
            if finding.kind == "missing_from_index":
                finding.fixed = True
                finding.message += " (fixed: added to the index)"
