"""What this server offers: its models and scheduler names."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import ContextDep, CurrentKey, SessionDep
from api.schemas import ModelList, SchedulerList
from api.serving import weights_source
from storage.contract.schedulers import SCHEDULERS
from storage.database.assets import load_catalog
from storage.database.registry import list_models

router = APIRouter(prefix="/v2", tags=["catalog"])


@router.get(
    "/models",
    summary="List the model slugs and what each accepts",
    response_model=None,
    responses={200: {"model": ModelList}},
)
def get_models(session: SessionDep, key: CurrentKey, context: ContextDep) -> dict[str, Any]:
    catalog = load_catalog(session)
    return {
        "models": [
            spec.model_dump(mode="json", exclude={"source"})
            | {
                "size_rule": spec.size_rule(),
                "serving": context.serving.serving(spec, weights_source(spec, None, catalog), session).as_json(),
            }
            for spec in list_models(session)
        ]
    }


@router.get(
    "/schedulers",
    summary="List the scheduler names and the diffusers scheduler of each",
    response_model=None,
    responses={200: {"model": SchedulerList}},
)
def get_schedulers(key: CurrentKey) -> dict[str, Any]:
    return {
        "schedulers": [
            {
                "name": s.name,
                "class": s.class_name,
                "options": s.options,
                "supported": s.unsupported_reason is None,
                "reason": s.unsupported_reason,
            }
            for s in SCHEDULERS.values()
        ]
    }
