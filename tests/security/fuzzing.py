"""Fuzzing a running server from its own OpenAPI schema with schemathesis: every operation, with requests
that fit the schema and requests that break it, over real HTTP.

A request fails the run when the server answers 5xx (or reports a server error inside a stream), drops the
connection, answers an error without the OpenAI error body, or sends back any of the `forbidden` strings
(a secret file's content, server paths).
Shared by tests/security/test_fuzz_api.py (a bounded count) and benchmarks/serve_fuzz.py (>= 1,000).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    #: "<operation> <mode> -> <status>" -> responses
    outcomes: Counter[str] = field(default_factory=Counter)
    #: one line per failed request: what was sent, what went wrong
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "outcomes": dict(sorted(self.outcomes.items())),
            "failures": self.failures,
        }


def fuzz(
    base_url: str,
    *,
    examples: int,
    known: dict[str, Sequence[str]],
    forbidden: Sequence[str] = (),
    headers: dict[str, str] | None = None,
    seed: int | None = None,
) -> FuzzReport:
    """Up to `examples` requests per operation and generation mode against the server at `base_url`.

    `known`: real values of body fields and path parameters (model names, adapter ids, page ids), put into
    some generated requests so that they get past the lookup and fuzz what comes after it. With no `seed`
    the run is derandomized (the same requests every time), as a test needs.
    """
    session = requests.Session()
    session.headers.update(headers or {})
    spec = session.get(f"{base_url}/v1/openapi.json", timeout=30)
    spec.raise_for_status()
    schema = schemathesis.openapi.from_dict(spec.json())
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(operation, mode, base_url, session, examples, known, forbidden, seed, report)
    return report


def _fuzz_operation(operation, mode, base_url, session, examples, known, forbidden, seed, report) -> None:
    label = operation.label
    real_values = st.fixed_dictionaries({name: st.sampled_from([None, *values]) for name, values in known.items()})

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), real=real_values)
    def run(case, real: dict[str, str | None]) -> None:
        for name, value in real.items():
            for place in (case.body, case.path_parameters):
                if value is not None and isinstance(place, dict) and name in place:
                    place[name] = value
        report.requests += 1
        sent = f"{label} ({mode.value}) {_short(case.path_parameters)} {_short(case.query)} {_short(case.body)}"
        try:
            response = case.call(base_url=base_url, session=session, timeout=120)
        except requests.RequestException as exc:
            report.failures.append(f"{sent}: no response ({type(exc).__name__})")
            return
        report.statuses[response.status_code] += 1
        report.outcomes[f"{label} {mode.value} -> {response.status_code}"] += 1
        problem = _problem(response, forbidden)
        if problem:
            report.failures.append(f"{sent}: {problem}")

    if seed is not None:
        run = hypothesis_seed(seed)(run)
    with contextlib.suppress(Unsatisfiable):  # negative mode, an operation that takes nothing: none to make
        run()


def _problem(response: Any, forbidden: Sequence[str]) -> str | None:
    text = response.content.decode("utf-8", "replace")  # bytes: the chart is a PNG
    if response.status_code >= 500:
        return f"{response.status_code}: {text[:200]}"
    streamed = any(v.startswith("text/event-stream") for v in response.headers.get("content-type", []))
    if streamed and b'"server_error"' in response.content:
        return f"{response.status_code}: a server error in the stream: {text[-300:]}"
    leaked = [item for item in forbidden if item and item.encode() in response.content]
    if leaked:
        return f"{response.status_code}: the response holds {leaked[0]!r}"
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            assert isinstance(error["message"], str) and "\n" not in error["message"] and error["type"]
        except (ValueError, KeyError, TypeError, AssertionError):
            return f"{response.status_code} without an OpenAI error body: {text[:200]}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 1600 else text[:157] + "..."
