"""Decoding untrusted inputs (storage.blobs.images): the "image" cases of the per-field table
(tests/support/validation.py) are refused naming the field, the limit and the value, by the calls
the app makes on an inline image or mask (api.submit.load_image: decode_inline, then open_image).
The same cases through the app are tests/api/test_submit_validation.py."""

from __future__ import annotations

import pytest

from storage.blobs.images import decode_inline, open_image
from storage.errors import InvalidInput
from storage.settings import Settings
from tests.support.validation import Case, bad_body, ids, of_stage

IMAGE = of_stage("image")
MAX_PIXELS = Settings.model_fields["max_image_pixels"].default


@pytest.mark.parametrize("case", IMAGE, ids=ids(IMAGE))
def test_an_input_that_is_no_allowed_picture_is_refused_naming_the_field(case: Case) -> None:
    value = bad_body(case)[case.field]
    assert isinstance(value, str)
    with pytest.raises(InvalidInput) as raised:
        open_image(case.field, decode_inline(case.field, value), max_pixels=MAX_PIXELS)
    error = raised.value
    assert error.field == case.field, error.message
    assert error.limit == case.limit, error.limit
    assert error.value == case.value, error.value
    assert error.message.startswith(case.field), error.message
    for word in case.words:
        assert word in error.message, f"{word!r} missing from {error.message!r}"
