"""Learner checkpoints: a folder with tensors.safetensors and meta.json, written atomically.

The meta records the learner, the base model's fingerprint and the learner's config; loading refuses a
checkpoint made for another learner or another base model with a one-line error, and reads the config back
through the learner's own validation (`stored_config`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from loracle.atomic import atomic_folder, holds_other_data
from loracle.errors import LoracleError
from loracle.learners import learner_config
from loracle.learners.base import LearnerConfig

TENSORS = "tensors.safetensors"
META = "meta.json"
#: the meta key of the learner's config; checkpoints older than the configs kept their options under these
CONFIG = "config"
_OLDER_CONFIG_KEYS = ("options", "settings")


def check_replaceable(path: Path) -> None:
    """Refuse a save to `path` that would destroy something other than an earlier checkpoint: saving replaces
    the whole folder, and a folder of documents or a file there is somebody's data."""
    if holds_other_data(path, META):
        what = "a folder that is not a loracle checkpoint" if path.is_dir() else "a file, not a checkpoint folder"
        raise LoracleError(f"{path}: {what}; not replacing it")


def save_checkpoint(
    path: Path,
    learner: str,
    fingerprint: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    config: LearnerConfig | None = None,
) -> None:
    """Write the checkpoint folder in one atomic step; `config` (the learner's options) goes into meta.json."""
    check_replaceable(path)
    with atomic_folder(path) as staging:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(staging / TENSORS))
        stored = {CONFIG: config.model_dump()} if config is not None else {}
        record = {"learner": learner, "base_fingerprint": fingerprint, **stored, **meta}
        (staging / META).write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")


def read_meta(path: Path) -> dict[str, Any]:
    """The record (meta.json) of the checkpoint at `path`, refused in one line if missing or damaged."""
    meta_path = path / META
    if not meta_path.is_file():
        raise LoracleError(f"{path}: not a loracle checkpoint (no {META})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise LoracleError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise LoracleError(f"{meta_path}: not a checkpoint record (a JSON {type(meta).__name__}, not an object)")
    return meta


def learner_meta(path: Path, learner: str) -> dict[str, Any]:
    """The record of the checkpoint at `path`, refused in one line unless `learner` wrote it (no model needed)."""
    meta = read_meta(path)
    if meta.get("learner") != learner:
        raise LoracleError(f"{path}: a checkpoint of learner {meta.get('learner')!r}, not {learner!r}")
    return meta


def load_checkpoint(path: Path, learner: str, fingerprint: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    meta = learner_meta(path, learner)
    if meta.get("base_fingerprint") != fingerprint:
        raise LoracleError(
            f"{path}: made for another base model "
            f"(fingerprint {meta.get('base_fingerprint')}, loaded model is {fingerprint})"
        )
    tensor_path = path / TENSORS
    try:
        tensors = load_file(str(tensor_path)) if tensor_path.is_file() else {}
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        raise LoracleError(f"{tensor_path}: unreadable ({exc})") from exc
    return tensors, meta


def stored_config(path: Path, learner: str, meta: dict[str, Any]) -> LearnerConfig:
    """The config a checkpoint's meta records, validated as `-o` options are: an option the learner no longer
    has (or a value out of range) is refused in one line naming it."""
    key = next((k for k in (CONFIG, *_OLDER_CONFIG_KEYS) if k in meta), None)
    where = f"{path / META}" + (" (saved by an older loracle: learn again)" if key in _OLDER_CONFIG_KEYS else "")
    return learner_config(learner, meta.get(key) if key else None, where=where)
