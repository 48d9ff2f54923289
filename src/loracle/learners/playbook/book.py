"""The playbook itself: bullets with stable ids, changed only by patch operations, capped, written atomically.

The CLI shows it (`loracle playbook show`) without loading any model, so it lives apart from the learner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from rich.table import Table

from loracle.atomic import write_text_atomic
from loracle.errors import LoracleError

PLAYBOOK_FILE = "playbook.json"
SECTIONS = ("fact", "strategy", "pitfall")


class Bullet(BaseModel):
    id: str
    section: str = "fact"
    text: str
    helpful: int = 0
    harmful: int = 0


class PatchOp(BaseModel):
    """One curator edit: add a bullet, or update / remove the bullet with `id`.

    `id` and `section` are held to their real shapes only when the local model is decoded under this
    schema (json_schema_extra); `apply` skips an unknown id and files an unknown section under "fact".
    """

    op: Literal["add", "update", "remove"]
    id: str = Field("", json_schema_extra={"maxLength": 8})
    section: str = Field("fact", json_schema_extra={"enum": list(SECTIONS)})
    text: str = ""


class Patch(BaseModel):
    operations: list[PatchOp] = Field(default_factory=list)


class Playbook(BaseModel):
    """Bullets with stable ids ("b1", "b2", ...); changed only through `apply`."""

    bullets: list[Bullet] = Field(default_factory=list)
    next_id: int = 1
    max_bullets: int = 30
    max_chars: int = 240

    @classmethod
    def read(cls, path: Path) -> Playbook:
        """The playbook at `path`; an empty one when there is none yet; a clear error when it is corrupt."""
        if not path.exists():
            return cls()
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValidationError, ValueError) as exc:
            raise LoracleError(f"{path}: not a readable playbook ({str(exc).splitlines()[0]})") from exc

    def write(self, path: Path) -> None:
        write_text_atomic(path, self.model_dump_json(indent=2) + "\n")

    def find(self, bullet_id: str) -> Bullet | None:
        return next((b for b in self.bullets if b.id == bullet_id), None)

    def apply(self, patch: Patch) -> list[str]:
        """Apply each valid operation in order; invalid ones (unknown id, empty text) are skipped.

        Returns what was done, one line per operation. When an add would exceed `max_bullets`, the
        bullet with the worst helpful-minus-harmful record (the oldest on a tie) makes room.
        """
        done: list[str] = []
        for op in patch.operations:
            text = " ".join(op.text.split())[: self.max_chars]
            section = op.section if op.section in SECTIONS else "fact"
            if op.op == "add":
                if not text or any(_same(text, b.text) for b in self.bullets):
                    continue
                if len(self.bullets) >= self.max_bullets:
                    worst = min(self.bullets, key=lambda b: (b.helpful - b.harmful, int(b.id[1:])))
                    self.bullets.remove(worst)
                    done.append(f"evicted {worst.id}")
                bullet = Bullet(id=f"b{self.next_id}", section=section, text=text)
                self.next_id += 1
                self.bullets.append(bullet)
                done.append(f"added {bullet.id}")
            elif (bullet := self.find(op.id)) is not None:
                if op.op == "remove":
                    self.bullets.remove(bullet)
                    done.append(f"removed {bullet.id}")
                elif text:
                    bullet.text, bullet.section = text, section
                    done.append(f"updated {bullet.id}")
        return done

    def render(self) -> str:
        return "\n".join(f"[{b.id}] ({b.section}) {b.text}" for b in self.bullets)


def _same(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def playbook_path(kb_state: Path) -> Path:
    """Where a knowledge base keeps its playbook: <kb>/.loracle/playbook.json."""
    return kb_state / PLAYBOOK_FILE


def playbook_table(playbook: Playbook, where: str) -> Table:
    table = Table(title=f"Playbook ({len(playbook.bullets)}/{playbook.max_bullets} bullets) — {where}")
    for column in ("id", "section", "bullet", "helpful", "harmful"):
        table.add_column(column)
    for b in playbook.bullets:
        table.add_row(b.id, b.section, b.text, str(b.helpful), str(b.harmful))
    return table
