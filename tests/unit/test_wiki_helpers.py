"""Shared by the wiki tests: a scripted writer LLM (a test double that answers by the kind of prompt it gets)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx

from loracle.config import EndpointConfig
from loracle.llm import LLM, Completion, EndpointBackend


class ScriptedWriter:
    """Answers summary, shortening, names, contradiction and question prompts from per-test rules."""

    name = "scripted"

    def __init__(
        self,
        summary: Callable[[str], str] | None = None,
        names: Callable[[str], dict | str] | None = None,
        verdict: Callable[[str], dict] | None = None,
        answer: str = "Ilse Marrow founded it.",
        shorten: Callable[[str], str] | None = None,
    ) -> None:
        self.summary = summary or (lambda doc: " ".join(doc.split(". ")[:2]).strip())
        self.names = names or (lambda doc: {"entities": [], "concepts": []})
        self.verdict = verdict or (lambda text: {"contradiction": False, "reason": ""})
        self.answer = answer
        self.shorten = shorten or (lambda sentence: "")
        self.prompts: list[str] = []

    def chat(self, messages, max_tokens, temperature, stop=None) -> Completion:
        prompt = messages[-1]["content"]
        self.prompts.append(prompt)
        document = _document(prompt)
        if "Summarise the document" in prompt:
            text = self.summary(document)
        elif "Shorten the sentence" in prompt:
            text = self.shorten(prompt.split("Sentence: ", 1)[1].split("\n\n", 1)[0])
        elif "List the named" in prompt:
            names = self.names(document)
            text = names if isinstance(names, str) else json.dumps(names)
        elif "contradict" in prompt:
            text = json.dumps(self.verdict(prompt))
        elif "Question:" in prompt:
            text = self.answer
        else:
            text = ""
        return Completion(text, prompt_tokens=len(prompt) // 4, completion_tokens=len(text) // 4)


def _document(prompt: str) -> str:
    match = re.search(r"Document:\n(.*?)\n\n(?:Summarise|List)", prompt, re.DOTALL)
    return match.group(1) if match else ""


def scripted_llm(**rules) -> LLM:
    return LLM(ScriptedWriter(**rules))


def scripted_endpoint(**rules) -> LLM:
    """A writer behind a real EndpointBackend whose HTTP answers come from a ScriptedWriter (no socket)."""
    writer = ScriptedWriter(**rules)

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        text = writer.chat(body["messages"], body["max_tokens"], body["temperature"]).text
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": text}}]})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    return LLM(EndpointBackend(EndpointConfig(base_url="http://writer.test/v1", model="m"), client=client))
