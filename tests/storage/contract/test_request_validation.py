"""The per-field table (tests/support/validation.py) against the contract alone: the family's request
class refuses the "body" cases, `resolve_params` refuses the "resolve" cases with an InvalidInput that
names the field, the limit and the value. The same table through the app is
tests/api/test_submit_validation.py; the "image" cases are tests/storage/blobs/test_images.py."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError

from storage.contract.params import resolve_params
from storage.contract.requests import REQUEST_CLASSES
from storage.contract.specs import BUILTIN, ModelSpec
from storage.errors import InvalidInput
from tests.conftest import TINY_SLUG
from tests.support.validation import (
    ABSENT,
    CASES,
    IMAGE_SIZE,
    SD15,
    Case,
    bad_body,
    ids,
    of_stage,
    registered_tiny_spec,
)

SPECS: dict[str, ModelSpec] = {SD15: BUILTIN[SD15], TINY_SLUG: registered_tiny_spec("/models/tiny-sd")}
BODY, RESOLVE = of_stage("body"), of_stage("resolve")
LIMITS = ("le", "ge", "lt", "gt", "max_length", "min_length")


def limit_of(error: dict[str, Any]) -> Any:
    """The constraint a pydantic error reports, if it has one."""
    ctx = error.get("ctx") or {}
    return next((ctx[name] for name in LIMITS if name in ctx), None)


@pytest.mark.parametrize("case", BODY, ids=ids(BODY))
def test_the_request_class_refuses_the_field(case: Case) -> None:
    spec = SPECS[case.model]
    with pytest.raises(ValidationError) as raised:
        REQUEST_CLASSES[spec.family].model_validate(bad_body(case))
    errors = raised.value.errors(include_url=False)
    named = [e for e in errors if e["loc"][:1] == (case.field,)]
    assert named, f"no error names {case.field!r}: {errors}"
    (error,) = named
    assert limit_of(error) == case.limit, error
    if case.value is ABSENT:
        assert error["type"] == "missing" and case.field not in error["input"], error
    else:
        assert error["input"] == case.value, error


@pytest.mark.parametrize("case", RESOLVE, ids=ids(RESOLVE))
def test_resolving_against_the_model_refuses_the_field(case: Case) -> None:
    """The body is a valid request of the family: the model's spec is what it breaks."""
    spec = SPECS[case.model]
    request = REQUEST_CLASSES[spec.family].model_validate(bad_body(case))
    with pytest.raises(InvalidInput) as raised:
        resolve_params(request, spec, image_size=IMAGE_SIZE, rng=random.Random(0))
    error = raised.value
    assert error.field == case.field, error.message
    assert error.limit == case.limit, error.limit
    assert error.value == case.value, error.value
    assert error.message.startswith(case.field), error.message
    for word in case.words:
        assert word in error.message, f"{word!r} missing from {error.message!r}"


def test_the_table_covers_every_stage() -> None:
    """Every case has a stage one of the layers runs (a case of another stage would run nowhere), and
    none of the 26 cases of the table is lost."""
    assert {case.stage for case in CASES} == {"body", "resolve", "image"}
    assert len(CASES) == 26 and len(set(ids(CASES))) == 26
