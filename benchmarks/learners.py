"""Learners benchmark: every learner on the fictional-facts corpus and on the two SQuAD articles, default model.

Each corpus is one eval run (floor and in-context ceiling in the same run). Full eval results go to
benchmarks/results/learners/<corpus>.eval.json (`loracle eval-report` draws one); the learner x corpus table
that opens RESULTS.md and the rows with their targets go to results/learners.json.
Corpus `squad-all-questions` learns the same SQuAD paragraphs as `squad` and asks every answerable question
of them (about 4 per paragraph instead of 1): a closer measurement for the learners cheap enough to answer
that many, on paragraphs no dev script reads.
With --engines torch,openvino every corpus is run once per decode engine, in that order (learning is torch's
either way), into files tagged with the engine, and each learner's answer time under one engine over the
other's from the same invocation becomes a row.
Corpora and learners can be run separately (--corpora fictional --learners ttt --tag ttt, options with
-o ttt.variant=dual_mlp): the rows are
rebuilt from every result on disk, each with its own time stamp and its own floor and ceiling; a learner
run again on a corpus is reported from its newest run only.

    nice -n 10 .venv/bin/python -m benchmarks.learners --corpora fictional,squad,squad-all-questions   (the table)
    .venv/bin/python -m benchmarks.learners --report-only     (the rows again from the results on disk)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, discordant, machine_info, row, write_result
from loracle.cli.eval_commands import parse_options

DATA = Path(__file__).parent / "data" / "fictional"
from benchmarks.devdata import SQUAD  # noqa: E402

OUT = RESULTS_DIR / "learners"
WANTED = ("context", "ttt", "hypernet", "kstore", "playbook")
CORPORA = ("fictional", "squad", "squad-all-questions")


def available_learners(requested: list[str]) -> tuple[list[str], list[str]]:
    """The requested learners whose module exists here, and those that are missing."""
    from loracle.learners import LEARNER_NAMES

    present, missing = [], []
    for name in requested:
        module = f"loracle.learners.{name}.learner"
        (present if name in LEARNER_NAMES and importlib.util.find_spec(module) else missing).append(name)
    return present, missing


def head_commit(root: Path = Path(__file__).parents[1]) -> str:
    """The checked-out commit (short hash), with "+changes" when the code under src/ or benchmarks/ differs
    from it, so that a record never names a commit whose code it did not run; '' outside a git checkout."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root)
    if commit.returncode != 0:
        return ""
    code = ["src", "benchmarks", ":!benchmarks/results", ":!benchmarks/RESULTS.md"]
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *code], cwd=root).returncode != 0
    return commit.stdout.strip() + ("+changes" if changed else "")


def run_corpus(
    corpus: str, learners: list[str], args: argparse.Namespace, lm: Any, commit: str, engine: str = ""
) -> dict:
    from loracle.atomic import write_text_atomic
    from loracle.eval.harness import EvalSettings
    from loracle.eval.inputs import load_inputs
    from loracle.eval.run import evaluate

    if corpus == "fictional":
        inputs = load_inputs(DATA, DATA / "qa.jsonl", max_questions=args.fictional_questions)
    else:
        inputs = load_inputs(squad_file=SQUAD, max_questions=args.max_questions)
        if corpus == "squad-all-questions":
            inputs.items = every_question(SQUAD, inputs.docs)
    settings = EvalSettings(
        max_new_tokens=args.max_new_tokens,
        general=not args.no_forgetting,
        general_knowledge_max=args.general_knowledge,
        general_reading_max=args.general_reading,
    )
    options: dict[str, dict[str, Any]] = {name: {"max_new_tokens": args.max_new_tokens} for name in learners}
    if "playbook" in options:
        options["playbook"].update(questions_per_doc=2, writer_max_tokens=200)
    for name, chosen in args.options.items():
        options.setdefault(name, {}).update(chosen)
    started = machine_info()  # the record's time and load are the run's start
    reference_before = reference_pass_seconds(lm)
    result = evaluate(lm, inputs, learners, options, settings, progress=lambda m: print(f"[{corpus}] {m}", flush=True))
    reference = (reference_before + reference_pass_seconds(lm)) / 2
    record = result.to_dict()
    tokens = [len(lm.tokenizer.encode(d.text)) for d in inputs.docs.values()]
    label = "-".join(part for part in (corpus, args.tag, engine) if part)
    record["corpus"] = {
        "name": label,
        "corpus": corpus,
        "documents": len(tokens),
        "mean_doc_tokens": sum(tokens) / len(tokens),
    }
    record["when"] = started["started"]
    record["commit"] = commit
    record["learner_options"] = args.options
    if engine:
        record["engine"] = {"name": engine, "session": args.session, "load_1m_end": os.getloadavg()[0]}
    record["machine"] = {**started, "load_avg_1m_at_end": os.getloadavg()[0], "reference_pass_s": reference}
    OUT.mkdir(parents=True, exist_ok=True)
    write_text_atomic(OUT / f"{label}.eval.json", json.dumps(record, indent=2, default=str) + "\n")
    return record


def reference_pass_seconds(lm: Any, tokens: int = 300, repeats: int = 5) -> float:
    """The median seconds of one forward pass of the base model over `tokens` tokens: how fast the machine was
    during a run (taken at its start and end), so learning times of runs on a busier or quieter machine can
    be compared as multiples of it."""
    import torch

    ids = torch.randint(0, len(lm.tokenizer), (1, tokens), generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first warms up
            start = time.perf_counter()
            lm.model(input_ids=ids.to(lm.device))
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def warm_up(lm: Any) -> None:
    """One short generation with the selected engine, so that preparing it (tracing, compiling) is not timed."""
    from loracle.model import GenerationConfig, stream_ids

    stream_ids(lm, lm.tokenizer.encode("Hello"), GenerationConfig(max_new_tokens=2)).text()


def engine_rows(records: list[dict]) -> list[dict]:
    """Each learner's answer time with one engine over the other's, from corpus runs of one --engines invocation."""
    sessions: dict[tuple[str, str], dict[str, dict]] = {}
    for record in records:
        if engine := record.get("engine"):
            sessions.setdefault((record["corpus"]["corpus"], engine["session"]), {})[engine["name"]] = record
    rows = []
    for (corpus, session), pair in sorted(sessions.items()):
        if set(pair) != {"torch", "openvino"}:
            continue
        runs = {name: {r["name"]: r for r in record["runs"] if r["kind"] == "learner"} for name, record in pair.items()}
        loads = ", ".join(
            f"{name} {record['machine'].get('load_avg_1m_at_start', 0):.1f}-{record['engine']['load_1m_end']:.1f}"
            for name, record in sorted(pair.items(), reverse=True)
        )
        for learner in sorted(set(runs["torch"]) & set(runs["openvino"])):
            torch_s = runs["torch"][learner]["answer_seconds_per_question"]
            engine_s = runs["openvino"][learner]["answer_seconds_per_question"]
            rows.append(
                row(
                    f"{corpus}: {learner} answer time, openvino / torch",
                    round(engine_s / torch_s, 3) if torch_s else "n/a",
                    "ratio",
                    note=f"{engine_s:.2f} vs {torch_s:.2f} s/question; {pair['torch']['questions']} questions, "
                    f"{pair['torch']['corpus']['documents']} documents; run {session}, torch first; load {loads}",
                )
            )
    return rows


def every_question(squad: Path, learned: dict[str, Any]) -> list:
    """Every answerable question of the paragraphs of `squad` that are in `learned`, in file order."""
    from loracle.eval.squad import load_squad

    return [q for p in load_squad(squad) if p.key in learned for q in p.questions]


def newest_learners(records: list[dict]) -> list[set[str]]:
    """For each record, the learners it holds the newest run of on its corpus with the same -o options (older runs
    of a learner that was run again are superseded, not reported beside the new one). Runs of an --engines
    comparison are reported by `engine_rows` only: often cut short, they never replace a learner's row."""

    def tabled(record: dict) -> list[str]:  # the learners of a record that may stand in the table
        return [] if record.get("engine") else [run["name"] for run in record["runs"] if run["kind"] == "learner"]

    newest: dict[tuple[str, str], str] = {}
    for record in records:
        for name in tabled(record):
            key = learner_key(record, name)
            newest[key] = max(newest.get(key, ""), record["when"])
    return [
        {name for name in tabled(record) if newest[learner_key(record, name)] == record["when"]} for record in records
    ]


def learner_key(record: dict, name: str) -> tuple[str, str]:
    """A learner's run on a corpus, told apart by the -o options it was given (none before they were kept)."""
    return record["corpus"]["corpus"], shown(record, name)


def rows_for(record: dict, learners: set[str]) -> list[dict]:
    """The rows of one corpus run: its floor and ceiling, and the runs of `learners` in it."""
    corpus = record["corpus"]["name"]
    per_300 = 300 / record["corpus"]["mean_doc_tokens"]
    runs = {r["name"]: r for r in record["runs"]}
    ceiling = runs["ceiling"]["accuracy"] or 0.0
    note = f"{record['questions']} questions, {record['corpus']['documents']} documents, run {record['when']}"
    if record.get("commit"):
        note += f", commit {record['commit']}"
    if record.get("learner_options"):
        note += f", options {json.dumps(record['learner_options'], sort_keys=True)}"
    reference = record.get("machine", {}).get("reference_pass_s")  # absent in runs made before it was measured
    if reference:
        note += f"; reference pass (one forward over 300 tokens) {reference:.3f} s"
    rows = [
        row(f"{corpus}: floor accuracy (no document)", runs["floor"]["accuracy"], "", "", None, note),
        row(f"{corpus}: ceiling accuracy (document in context)", ceiling, "", "", None, note),
    ]
    for name, run in runs.items():
        if run["kind"] != "learner" or name not in learners:
            continue
        if run["accuracy"] is None:
            rows.append(row(f"{corpus}: {name}", "failed", "", "", False, str(run["error"])[:200]))
            continue
        share = run["accuracy"] / ceiling if ceiling else None
        target = {"ttt": 0.8, "context": 0.95}.get(name)
        rows.append(
            row(
                f"{corpus}: {name} accuracy / ceiling",
                round(share, 3) if share is not None else "n/a",
                "ratio",
                f">= {target}" if target else "",
                (share >= target) if (target and share is not None) else None,
                f"accuracy {run['accuracy']:.3f}, F1 {run['f1']:.3f}; {against_ceiling(run, runs['ceiling'])}",
            )
        )
        if run["forgetting_ratio"] is not None:
            rows.append(
                row(
                    f"{corpus}: {name} forgetting ratio",
                    round(run["forgetting_ratio"], 3),
                    "ratio",
                    "<= 0.05" if name == "ttt" else "",
                    run["forgetting_ratio"] <= 0.05 if name == "ttt" else None,
                    f"general set {run['general_before']:.3f} -> {run['general_after']:.3f}",
                )
            )
        learn_300 = run["learn_seconds_per_doc"] * per_300
        speed = f"; {learn_300 / reference:,.0f} reference passes in this run" if reference else ""
        rows.append(
            row(
                f"{corpus}: {name} learning time per 300-token document",
                round(learn_300, 2),
                "s",
                "<= 60" if name == "ttt" else "",
                learn_300 <= 60 if name == "ttt" else None,
                f"{run['learn_seconds_per_doc']:.2f} s per document of "
                f"{record['corpus']['mean_doc_tokens']:.0f} tokens on average; machine shared{speed}",
            )
        )
        rows.append(row(f"{corpus}: {name} answer time", round(run["answer_seconds_per_question"], 2), "s/question"))
        rows.append(row(f"{corpus}: {name} bytes on disk", run["bytes_on_disk"], "bytes"))
    return rows


def table_entries(records: list[dict], newest: list[set[str]], learners: tuple[str, ...]) -> list[dict[str, str]]:
    """The learner x corpus table: for every learner and corpus, the newest run's figures, or a row saying it is
    not yet measured."""
    from loracle.eval.interval import ratio_interval

    found: dict[tuple[str, str], dict[str, str]] = {}
    for record, names in zip(records, newest, strict=True):
        corpus = record["corpus"]["corpus"]
        runs = {r["name"]: r for r in record["runs"]}
        ceiling = runs["ceiling"]
        for name in names:
            run = runs[name]
            run_id = f"{record.get('commit') or 'no commit'}, {record['when']}"
            if reference := record.get("machine", {}).get("reference_pass_s"):  # how busy the machine was
                run_id += f"; reference pass {reference:.2f} s"
            label = shown(record, name)
            entry = {"learner": label, "corpus": corpus, "run": run_id}
            if run["accuracy"] is None:
                found[(label, corpus)] = {**entry, "accuracy": f"failed: {str(run['error'])[:80]}"}
                continue
            right = [q["correct"] for q in run["questions"]]
            interval = ratio_interval(right, [q["correct"] for q in ceiling["questions"]])
            ratio = run["accuracy"] / ceiling["accuracy"] if ceiling["accuracy"] else float("nan")
            forgetting = run["forgetting_ratio"]
            found[(label, corpus)] = {
                **entry,
                "accuracy": f"{run['accuracy']:.3f} / {ceiling['accuracy']:.3f} = {ratio:.3f}",
                "interval": f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else "",
                "forgetting": f"{forgetting:.3f}" if forgetting is not None else "",
                "learn_s_300": f"{run['learn_seconds_per_doc'] * 300 / record['corpus']['mean_doc_tokens']:.1f}",
                "answer_s": f"{run['answer_seconds_per_question']:.2f}",
                "bytes": f"{run['bytes_on_disk']:,}",
            }
    table = [
        found.get((name, corpus), {"learner": name, "corpus": corpus, "accuracy": "not yet measured"})
        for name in learners
        for corpus in CORPORA
    ]
    return table + [entry for (label, _), entry in sorted(found.items()) if label not in learners]


def shown(record: dict, name: str) -> str:
    """A learner as the table names it: with the -o options of its run, if any (`ttt variant=dual_mlp`)."""
    chosen = record.get("learner_options", {}).get(name, {})
    return " ".join([name, *(f"{key}={value}" for key, value in sorted(chosen.items()))])


def against_ceiling(run: dict, ceiling: dict) -> str:
    """Where a learner's right answers differ from the ceiling's, question by question, and the 95% paired
    bootstrap interval of its ratio: on a few dozen questions one reply moves the ratio by several points."""
    from loracle.eval.interval import ratio_interval

    pairs = list(zip(run["questions"], ceiling["questions"], strict=True))
    if any(mine["question"] != theirs["question"] for mine, theirs in pairs):
        raise ValueError(f"{run['name']} and the ceiling answered different questions")
    right = [mine["correct"] for mine, _ in pairs]
    reference = [theirs["correct"] for _, theirs in pairs]
    gained, lost = discordant(right, reference)
    interval = ratio_interval(right, reference)
    spread = f"95% interval {interval[0]:.2f}-{interval[1]:.2f} (paired bootstrap)" if interval else "no interval"
    return f"{spread}; right where the ceiling is wrong: {gained}, wrong where it is right: {lost}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default="fictional,squad", help=f"comma-separated, of {', '.join(CORPORA)}")
    parser.add_argument("--learners", default=",".join(WANTED))
    parser.add_argument("--max-questions", type=int, default=24, help="SQuAD questions (spread over paragraphs)")
    parser.add_argument("--fictional-questions", type=int, default=None, help="cap on fictional questions")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--general-knowledge", type=int, default=12, help="general-knowledge questions kept")
    parser.add_argument("--general-reading", type=int, default=6, help="reading-comprehension items kept")
    parser.add_argument("--no-forgetting", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 is faster on an oversubscribed machine)"
    )
    parser.add_argument("--tag", default="", help="name this run's result files <corpus>-<tag> (keeps others)")
    parser.add_argument(
        "--engines", default="", help="decode engines to run each corpus with, in order (torch,openvino)"
    )
    parser.add_argument(
        "-o", "--option", action="append", default=[], help="a learner option learner.key=value (repeatable)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="run nothing: rebuild the rows from the results on disk"
    )
    args = parser.parse_args()
    args.options = parse_options(args.option)  # a bad option stops the run before the model loads
    args.session = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    engines = [e for e in args.engines.split(",") if e]
    if unknown := sorted(set(engines) - {"torch", "openvino"}):
        parser.error(f"unknown engine {', '.join(unknown)} (known: torch, openvino)")
    commit = head_commit()  # the code this process runs; HEAD may move while a run of an hour goes on

    from loracle.model import load_model
    from loracle.model.engine import select_engine
    from loracle.runtime import configure_threads

    corpora = [] if args.report_only else [c for c in args.corpora.split(",") if c]
    if unknown := sorted(set(corpora) - set(CORPORA)):
        parser.error(f"unknown corpus {', '.join(unknown)} (known: {', '.join(CORPORA)})")
    configure_threads(args.threads)
    learners, missing = available_learners([n for n in args.learners.split(",") if n])
    if corpora:
        lm = load_model("embedded")
        for corpus in corpora:
            for engine in engines or [""]:
                if engine:
                    select_engine(engine)
                    warm_up(lm)
                run_corpus(corpus, learners, args, lm, commit, engine)
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(OUT.glob("*.eval.json"))]
    newest = newest_learners(records)
    rows = [r for record, names in zip(records, newest, strict=True) if names
            for r in rows_for(record, names)]  # fmt: skip
    engines_compared = engine_rows(records)
    rows += engines_compared
    for name in missing:
        rows.append(row(f"{name}", "not run", "", "", False, "learner not present in this tree when the benchmark ran"))
    from loracle.learners import LEARNER_NAMES

    data = {
        "table": table_entries(records, newest, LEARNER_NAMES),
        "engine_rows": engines_compared,
        "learners_requested": args.learners,
        "learners_missing": missing,
        "settings": vars(args),
        "corpora": {
            r["corpus"]["name"]: {k: r[k] for k in ("when", "questions", "documents", "general", "settings")}
            for r in records
        },
        "eval_files": [str(p.relative_to(RESULTS_DIR.parent)) for p in sorted(OUT.glob("*"))],
    }
    print(json.dumps(rows, indent=1))
    write_result("learners", rows, data)


if __name__ == "__main__":
    main()
