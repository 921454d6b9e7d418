"""Content blocks: which jobs run the safety checker and what a flagged image does (request > key > route)."""

from __future__ import annotations

import random

import pytest

from storage.contract.content import apply_content_policy, route_action
from storage.contract.params import JobParams, resolve_params
from storage.contract.requests import REQUEST_CLASSES
from storage.contract.specs import BUILTIN
from storage.errors import InvalidInput

SD15 = BUILTIN["sd1.5-inpainting"]
ERASE = BUILTIN["erase"]


def policy(
    body: dict, *, key: str | None = None, api_format: str | None = None, checker: str = "request", spec=SD15
) -> JobParams:
    request = REQUEST_CLASSES[spec.family].model_validate({"prompt": "p", "image": "i", "mask": "m", **body})
    params = resolve_params(request, spec, image_size=(512, 512), rng=random.Random(0))
    return apply_content_policy(params, request, key_action=key, api_format=api_format, checker=checker)  # type: ignore[arg-type]


def test_each_route_keeps_its_apis_semantics() -> None:
    assert route_action(None) == "block" and route_action("modelslab") == "replace"
    segmind = policy({"safety_checker": True})
    assert segmind.safety == "sensitive_content_text" and segmind.nsfw_action == "block"
    assert policy({"safety_checker": True}, api_format="modelslab").nsfw_action == "replace"


def test_the_request_overrides_the_key_and_the_key_the_route() -> None:
    assert policy({"safety_checker": True}, key="replace").nsfw_action == "replace"
    assert policy({"safety_checker": True}, key="block", api_format="modelslab").nsfw_action == "block"
    assert policy({"safety_checker": True, "nsfw_action": "block"}, key="replace").nsfw_action == "block"
    assert policy({"safety_checker": True, "nsfw_action": "replace"}).nsfw_action == "replace"


def test_without_the_check_nothing_changes_and_always_turns_it_on() -> None:
    assert policy({}).safety is None
    always = policy({}, checker="always")
    assert always.safety == "sensitive_content_text" and always.nsfw_action == "block"
    assert policy({}, checker="always", spec=ERASE).safety is None, "erase paints nothing new"
    assert policy({"nsfw_action": "replace"}, checker="always").nsfw_action == "replace"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"nsfw_action": "block"}, "nsfw_action"),
        ({"safety_checker": True, "nsfw_action": "block", "safety_checker_type": "blur"}, "safety_checker_type"),
    ],
)
def test_choices_that_cannot_apply_are_400s(body: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        policy(body)
    assert info.value.field == field


def test_an_unknown_action_is_a_400_from_the_request_class() -> None:
    with pytest.raises(ValueError, match="nsfw_action"):
        policy({"safety_checker": True, "nsfw_action": "hide"})
