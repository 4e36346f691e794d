"""Schemathesis against kvyard's own OpenAPI description (``kvyard.api.openapi``), in process.

Cases go to the real frontend bound as Ray Serve binds it (tests/api/ingress.py), over a fake
engine. Every answer must be below 500 and documented, and every 4xx must be in the API's own
error shape (Anthropic's for ``/v1/messages*``, OpenAI's elsewhere). Two runs:

- ``test_coverage``: schemathesis' coverage phase for every operation, on the description as
  served: boundary values, each missing or mistyped field, each invalid value alone. Invalid data
  must be refused (``negative_data_rejection``): the description says what kvyard accepts.
- ``test_fuzz``: ``EXAMPLES`` fuzzed cases per operation, valid and invalid mixed. Two operations
  share another's body struct: every fuzzed Messages body is also sent to ``count_tokens`` and
  every Chat Completions body to ``/v1/kvyard/route`` (generating a body costs more than sending
  it). To spend the time on the fields kvyard reads, request structs are fuzzed as closed objects:
  the description leaves them open (unknown fields are ignored; clients send many) and generating
  arbitrary unknown fields would double the run. Invalid cases still add unknown fields, so this
  run does not ask invalid data to be refused (``test_coverage`` does).

Most cases carry the valid API key and the served model name (in the body, or as ``model_id``) so
that they reach the pipeline; every eighth keeps its generated key (401), another eighth its
generated model (404).
Runtime: about 5 minutes of one core (``FUZZ_EXAMPLES`` sets the cases per operation).
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from kvyard.api.openapi import document
from tests.api.ingress import API_KEY, MODEL

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
PAIRED = {"/v1/messages": "/v1/messages/count_tokens", "/v1/chat/completions": "/v1/kvyard/route"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SETTINGS = {"deadline": None, "derandomize": True, "database": None, "suppress_health_check": list(HealthCheck), "print_blob": True}


def closed(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with every request struct closed to unknown fields (for generation, see above)."""
    doc = copy.deepcopy(doc)
    for name, component in doc["components"]["schemas"].items():
        if "properties" in component and not name.endswith("Error"):
            component["additionalProperties"] = False
    return doc


coverage_schema = schemathesis.openapi.from_dict(document())
coverage_schema.config.phases.update(phases=["coverage"])

fuzz_schema = schemathesis.openapi.from_dict(closed(document())).exclude(path=list(PAIRED.values()))
fuzz_schema.config.phases.update(phases=["fuzzing"])
fuzz_schema.config.generation.update(max_examples=EXAMPLES)

fuzzed: Counter[str] = Counter()
answered: Counter[tuple[str, int]] = Counter()  # (path, status class) of every answer


def error_shape_problem(path: str, body: Any) -> str | None:
    """What is wrong with a 4xx body of the API at ``path`` (None: it is that API's error shape)."""
    if path.startswith("/v1/messages"):
        error = body.get("error") if isinstance(body, dict) and body.get("type") == "error" else None
        ok = isinstance(error, dict) and isinstance(error.get("type"), str) and isinstance(error.get("message"), str) and error["message"]
        return None if ok else f"not Anthropic's error shape: {body!r}"
    error = body.get("error") if isinstance(body, dict) else None
    ok = isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error) and isinstance(error["message"], str) and error["message"]
    return None if ok else f"not OpenAI's error shape: {body!r}"


def check_answer(path: str, status: int, text: str, body: Any) -> None:
    answered[path, status // 100] += 1
    assert status < 500, f"{status}: {text}"
    if 400 <= status < 500:
        problem = error_shape_problem(path, body)
        assert problem is None, problem


def call(case, client, n: int, checks: list) -> dict[str, str]:
    """Send ``case`` (with the key and model name unless ``n`` says otherwise) and check the answer."""
    headers = {}
    if n % 8 != 3:
        headers["x-api-key"] = API_KEY
    if n % 8 != 5 and isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = MODEL
    if n % 8 != 5 and case.path_parameters and "model_id" in case.path_parameters:
        case.path_parameters["model_id"] = MODEL
    response = case.call(session=client, headers=headers)
    check_answer(case.operation.path, response.status_code, response.text, _json(response))
    case.validate_response(response, checks=checks, headers=headers)
    return headers


def call_paired(case, client, headers: dict[str, str], path: str) -> None:
    """Send ``case``'s request to ``path``, another operation with the same body struct."""
    request = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    response = client.request(**{**request, "url": f"http://testserver{path}"})
    check_answer(path, response.status_code, response.text, _json(response))
    assert str(response.status_code) in document()["paths"][path]["post"]["responses"], response.text


def _json(response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@coverage_schema.parametrize()
@hypothesis.settings(**SETTINGS)
def test_coverage(case, client):
    call(case, client, 0, [*CHECKS, negative_data_rejection])


@fuzz_schema.parametrize()
@hypothesis.settings(max_examples=EXAMPLES, **SETTINGS)
def test_fuzz(case, client):
    n = fuzzed[case.operation.label]
    fuzzed[case.operation.label] += 1
    headers = call(case, client, n, CHECKS)
    paired = PAIRED.get(case.operation.path)
    if paired is not None:
        fuzzed[f"POST {paired}"] += 1
        call_paired(case, client, headers, paired)


def test_every_operation_with_inputs_got_its_cases():
    """After ``test_fuzz`` (file order; run the two together): hypothesis ran out of cases only
    where there are none to make (no parameters, no body: /health, /metrics)."""
    assert fuzzed, "no fuzzed cases were counted: run this test together with test_fuzz, after it"
    with_inputs = [f"{method.upper()} {path}" for path, item in document()["paths"].items() for method, op in item.items() if "parameters" in op or "requestBody" in op or op["security"]]
    assert {label: fuzzed[label] for label in with_inputs if fuzzed[label] < EXAMPLES} == {}
    print({f"{path} {status}xx": count for (path, status), count in sorted(answered.items())})
    # Enough valid cases get through to the engine and the encoders, not only the decoders.
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses"):
        assert answered[path, 2] >= EXAMPLES // 20, (path, answered[path, 2])
