"""Property-based fuzzing of the HTTP service from its own OpenAPI schema (schemathesis, in
process over ASGI): whatever is sent, valid or not, no 5xx and every answer matches the schema.

schemathesis' pytest plugin (``from_fixture``) does not run under pytest 9 (it reads a removed
``node._nodeid``), so the schema's Hypothesis strategy is driven with ``@given`` directly."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from digitseq.apps.serve.app import ServeSettings, create_app


@pytest.fixture(scope="module")
def api_schema(random_ctc_dir):  # the default reader's kind: any length, ?digits=1..64
    # Small limits so that the fuzzer also reaches the 413 answers.
    app = create_app(
        ServeSettings(model=str(random_ctc_dir), max_files=3, max_file_mb=0.05, max_body_mb=0.2)
    )
    # A request over a documented limit (e.g. maxItems of files) is rejected with 413, which
    # schemathesis' negative_data_rejection does not expect by default.
    statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": statuses}}}
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


N = int(os.environ.get("DIGITSEQ_FUZZ_EXAMPLES", "30"))  # more for a longer hunt
CASES = [  # (path, method, generation mode, examples); GETs without parameters have no negatives
    ("/v1/read", "POST", GenerationMode.POSITIVE, N),
    ("/v1/read", "POST", GenerationMode.NEGATIVE, N),
    ("/v1/model", "GET", GenerationMode.POSITIVE, 3),
    ("/healthz", "GET", GenerationMode.POSITIVE, 3),
]


def unexpressible(case) -> list:
    """What a schema cannot refuse is refused with 422 by the parsers the CLI shares: a range
    with A > B (``digits=12-8``), a pattern that is no regular expression (``pattern=([``), a
    pattern given with digits. The fuzzer may not call those valid requests refused."""
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    from digitseq.core.errors import DigitseqError
    from digitseq.models.ctc_pattern import compile_pattern

    query = case.query or {}
    lo, _, hi = str(query.get("digits") or "").partition("-")
    reversed_range = lo.isdigit() and hi.isdigit() and int(lo) > int(hi)
    pattern, bad_pattern = query.get("pattern"), False
    if pattern:
        try:
            compile_pattern(str(pattern))
            bad_pattern = query.get("digits") is not None
        except DigitseqError:
            bad_pattern = True
    return [positive_data_acceptance] if reversed_range or bad_pattern else []


@pytest.mark.parametrize(("path", "method", "mode", "examples"), CASES)
def test_api_conforms_to_its_schema(api_schema, path, method, mode, examples):
    statuses = []

    @given(case=api_schema[path][method].as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case):
        # default checks: not_a_server_error, status code / content type / response schema
        # conformance, and by mode positive_data_acceptance or negative_data_rejection
        response = case.call_and_validate(excluded_checks=unexpressible(case))
        assert response.status_code < 500 and "Traceback" not in response.text
        statuses.append(response.status_code)
        if os.environ.get("DIGITSEQ_FUZZ_VERBOSE"):
            print(
                case.method, case.path, case.media_type, response.status_code, response.text[:150]
            )

    check()
    if path == "/v1/read":  # the fuzzer got past the parser, and was also turned away
        wanted = {200} if mode == GenerationMode.POSITIVE else {413, 415, 422}
        assert wanted & set(statuses), statuses
