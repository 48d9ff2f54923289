"""Does the context learner keep the model's reading of a passage the user gives it? Dev data only.

The forgetting set of the learners benchmark asks reading-comprehension questions with their paragraph in the
prompt. When that paragraph sits next to learned ones (same article), retrieval adds a learned chunk and the
logit bias pulls the reply toward it rather than toward the user's passage. This measures that on SQuAD dev
paragraphs: the even ones of ttt_dev's `squad_dev` pool are learned, the odd ones (their neighbours) are read,
each question with its own paragraph in the prompt as the general set words it (`GeneralItem.prompt`).
Paragraphs of the bundled general reading set are left out, so nothing here is the forgetting set's.
Each question is answered by the base model (plain decoding: what it reads with nothing learned) and by the
learner with `own_passage_tokens` None (its message never biased toward, as before) and at its default
(a message that long or longer is biased toward like a retrieved chunk; every prompt here is).
First run (then `bias_question`, always on or off): on kept 22 of 40 right, off 15, the base model 22; but
always on cost closed-book dev 7 questions (context_bias_dev_question), so the default now biases toward a
message only from OWN_PASSAGE_TOKENS on, longer than every closed-book dev question.

Run: nice -n 5 .venv/bin/python -m benchmarks.context_reading_dev   (about 15 minutes on two threads)
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import row, write_result
from benchmarks.ttt_dev import squad_dev
from loracle.eval.general import READING_FILE, GeneralItem, data_file, load_general
from loracle.eval.scoring import is_correct
from loracle.learners.context.config import OWN_PASSAGE_TOKENS
from loracle.learners.context.learner import ContextLearner
from loracle.model import GenerationConfig, generate_chat, load_model, question_messages
from loracle.runtime import configure_threads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paragraphs", type=int, default=48, help="drawn from the dev pool; half learned, half read")
    parser.add_argument("--per-doc", type=int, default=2, help="questions per read paragraph")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    started = time.perf_counter()
    lm = load_model("embedded")
    general = {" ".join(item.context.split()) for item in load_general(data_file(READING_FILE), "reading")}
    pool = [
        (doc, qs) for doc, qs in squad_dev(args.paragraphs, args.per_doc) if " ".join(doc.text.split()) not in general
    ]
    learned, read = pool[0::2], pool[1::2]
    items = [GeneralItem("reading", q, tuple(a), doc.text) for doc, qs in read for q, a in qs]
    learner = ContextLearner(lm)
    learner.learn([doc for doc, _ in learned])
    plain = GenerationConfig(max_new_tokens=learner.max_new_tokens)
    records = []
    for item in items:
        base = generate_chat(lm, question_messages(item.prompt), plain)
        retrieved = len(learner.retrieve(item.prompt))
        replies = {"base": base}
        for limit in (None, OWN_PASSAGE_TOKENS):
            learner.own_passage_tokens = limit
            replies[f"own_passage_tokens={limit}"] = learner.answer(item.prompt).text
        right = {k: is_correct(v, list(item.answers)) for k, v in replies.items()}
        records.append({"question": item.question, "retrieved": retrieved, "replies": replies, "right": right})
        print(records[-1]["question"], retrieved, right, flush=True)
    n = len(records)
    note = f"{len(learned)} learned paragraphs, {len(read)} read, {n} questions"
    rows = [
        row("reading questions with learned chunks retrieved", sum(r["retrieved"] > 0 for r in records) / n, note=note)
    ]
    for key in records[0]["right"]:
        got = sum(r["right"][key] for r in records)
        lost = sum(r["right"]["base"] and not r["right"][key] for r in records)
        rows.append(row(f"right: {key}", got / n, note=f"{got}/{n}; {lost} right with the base model lost"))
    data = {"learned": [d.id for d, _ in learned], "records": records, "seconds": time.perf_counter() - started}
    path = write_result("context_reading_dev", rows, data)
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
