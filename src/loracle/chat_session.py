"""The interactive `loracle chat` session: history, /doc, /adapter, /reset, /quit; with a knowledge base's
answerer (`chat --kb`), each question is routed to its adapters (loracle.asking) and the reply names its
documents."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from loracle.errors import LoracleError
from loracle.model import GenerationConfig, LoadedModel, Message, apply_adapters, load_model, stream_chat
from loracle.model.chat import DOC_PROMPT
from loracle.runtime import configure_threads
from loracle.sources import read_document

if TYPE_CHECKING:
    from loracle.asking import KnowledgeBaseAnswerer

HELP = "Commands: /doc FILE (put a document in context), /adapter DIR (apply an adapter), /reset, /quit"
KB_HELP = "Each question is answered from the knowledge base's adapters routed to it. Commands: /reset, /quit"


class ChatSession:
    def __init__(
        self, model_spec: str, threads: int, console: Console, answerer: KnowledgeBaseAnswerer | None = None
    ) -> None:
        self.console = console
        self.answerer = answerer
        self.warned: set[str] = set()
        if answerer is not None:
            self.base = answerer.lm
        else:
            configure_threads(threads)
            with console.status(f"Loading {model_spec} model..."):
                self.base = load_model(model_spec)
        self.lm: LoadedModel = self.base
        self.adapters: list[Path] = []
        self.document: str | None = None
        self.history: list[Message] = []

    def run(self, doc: Path | None, adapters: Sequence[Path]) -> None:
        if doc:
            self.handle(f"/doc {doc}")
        for folder in adapters:
            self.handle(f"/adapter {folder}")
        self.console.print(f"[dim]{self.lm.name}. {KB_HELP if self.answerer else HELP}[/]")
        while True:
            try:
                line = self.console.input("[bold cyan]you>[/] ")
            except EOFError:
                break
            if not self.handle(line):
                break

    def handle(self, line: str) -> bool:
        """Process one line of input; False means the session is over."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self._command(line)
        if self.answerer is not None:
            return self._routed_turn(line)
        self.history.append({"role": "user", "content": self._with_document(line)})
        self._reply(stream_chat(self.lm, self.history, GenerationConfig(max_new_tokens=300)))
        return True

    def _reply(self, pieces: Iterable[str]) -> None:
        """Stream the reply and keep it in the history."""
        self.console.print("[bold green]loracle>[/] ", end="")
        reply = ""
        for piece in pieces:
            reply += piece
            self.console.out(piece, end="", highlight=False)
        self.console.out("")
        self.history.append({"role": "assistant", "content": reply.strip()})

    def _routed_turn(self, question: str) -> bool:
        """One question answered from the knowledge base's adapters, routed on it; each warning shown once."""
        assert self.answerer is not None
        turn: list[Message] = [*self.history, {"role": "user", "content": question}]
        try:
            stream = self.answerer.stream(turn, GenerationConfig(max_new_tokens=self.answerer.config.max_new_tokens))
        except LoracleError as exc:
            self.console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            return True
        for warning in stream.plan.warnings:
            if warning not in self.warned:
                self.warned.add(warning)
                self.console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
        self.history.append(turn[-1])
        self._reply(stream)
        self.console.print(f"[dim]{escape(stream.plan.sources_line())}[/]", highlight=False)
        return True

    def _with_document(self, question: str) -> str:
        """The first question after /doc carries the document; later turns see it in the history."""
        if self.document is None:
            return question
        content, self.document = DOC_PROMPT.format(doc=self.document, question=question), None
        return content

    def _command(self, line: str) -> bool:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        try:
            if name in ("/quit", "/exit"):
                return False
            if self.answerer is not None and name in ("/doc", "/adapter"):
                self.console.print(f"[dim]{name} is not available with --kb. {KB_HELP}[/]")
                return True
            if name == "/reset":
                self.history.clear()
                self.document = None
                self.console.print("[dim]history cleared[/]")
            elif name == "/doc" and arg:
                self.document = read_document(Path(arg).expanduser()).text
                self.console.print(f"[dim]{arg} will be in context for the next question[/]")
            elif name == "/adapter" and arg:
                self.adapters.append(Path(arg).expanduser())
                self.lm = apply_adapters(self.base, self.adapters, merge=False)
                self.console.print(f"[dim]adapters active: {', '.join(map(str, self.adapters))}[/]")
            else:
                self.console.print(f"[dim]{HELP}[/]")
        except LoracleError as exc:
            if name == "/adapter":
                self.adapters.pop()
            self.console.print(f"[red]error:[/] {exc}")
        return True
