"""`loracle compile --ray [ADDRESS]`: the address may be left out (Ray's default), parsed without Ray installed."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from loracle.cli import adapter_commands, app
from loracle.cli.optional_value import bare_to_empty
from loracle.knowledge_base import KnowledgeBase
from loracle.model.loader import LoadedModel
from loracle.ray_compile import RayCompiler


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--ray"], ["--ray="]),
        (["--ray", "--kb", "x"], ["--ray=", "--kb", "x"]),
        (["--ray", "auto"], ["--ray", "auto"]),
        (["--ray=local"], ["--ray=local"]),
        (["--", "--ray"], ["--", "--ray"]),  # positional after "--"
    ],
)
def test_a_bare_option_gets_an_empty_value(args: list[str], expected: list[str]) -> None:
    assert bare_to_empty(args, ["--ray"]) == expected


@pytest.mark.parametrize(
    ("args", "address", "workers"),
    [
        (["--ray"], "", 0),
        (["--ray", "--ray-workers", "2"], "", 2),
        (["--ray-workers", "2", "--ray"], "", 2),
        (["--ray", "auto"], "auto", 0),
        (["--ray=ray://head:10001"], "ray://head:10001", 0),
        (["--ray", "local", "--ray-workers", "1"], "local", 1),
    ],
)
def test_compile_takes_ray_with_or_without_an_address(
    monkeypatch: pytest.MonkeyPatch, args: list[str], address: str, workers: int
) -> None:
    seen: dict = {}

    def on_ray(knowledge: object, model: str | None, address: str, workers: int, threads: int) -> None:
        seen.update(address=address, workers=workers)
        raise typer.Exit(3)

    monkeypatch.setattr(adapter_commands, "open_kb", lambda *_: object())
    monkeypatch.setattr(adapter_commands, "on_ray", on_ray)
    result = CliRunner().invoke(app, ["compile", *args])
    assert result.exit_code == 3, result.output
    assert seen == {"address": address, "workers": workers}


def test_without_ray_the_compile_stays_local(monkeypatch: pytest.MonkeyPatch) -> None:
    class Local:
        @property
        def compiler(self) -> None:
            raise typer.Exit(4)  # reached the local compile

    monkeypatch.setattr(adapter_commands, "open_kb", lambda *_: Local())
    monkeypatch.setattr(adapter_commands, "on_ray", lambda *_: pytest.fail("went to Ray"))
    assert CliRunner().invoke(app, ["compile"]).exit_code == 4


def test_an_empty_address_is_ray_s_own_default(tiny_lm: LoadedModel, tmp_path: Path) -> None:
    knowledge = KnowledgeBase(tmp_path, learner="ttt", lm=tiny_lm, learner_options={"steps_per_doc": 1})
    for address, expected in (("", None), ("auto", "auto")):
        compiler = adapter_commands.on_ray(knowledge, "some-model", address, 0, 1).compiler
        assert isinstance(compiler, RayCompiler) and compiler.address == expected  # None: ray.init() decides
