"""Test-only: stop the process hard at a named commit point, so tests can show a crash there loses nothing.

With LORACLE_CRASH_AT=<point> (or <point>@<n>: the n-th time it is reached) in the environment, the process
kills itself with SIGKILL at that point, exactly as `kill -9` would. Unset, as it always is outside the crash
tests, `crash_point` only reads the environment and returns: no behaviour changes.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

CRASH_ENV = "LORACLE_CRASH_AT"

#: every point a test may name, in the order a run meets them, with what is on disk when it fires
POINTS = {
    "ingest-raw-copied": "a source is copied into raw/, no page written yet",
    "ingest-pages-written": "a source's pages are written, the wiki state does not record them yet",
    "ingest-source-saved": "the wiki state records a source, index.md does not list its pages yet",
    "ingest-index-written": "index.md is rewritten, the state does not record its lines yet",
    "compile-staged": "an adapter is built in its hidden staging folder, not published yet",
    "adapter-published": "an adapter is published, the next one not started",
    "folder-swap": "a finished folder (adapter, merge, checkpoint) is about to replace the old one",
    "file-replace": "a file is written in full beside its target, about to be renamed over it",
}

_reached: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if LORACLE_CRASH_AT names `name` (and this is the n-th time it is reached)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
