"""``GET /brand`` and ``GET /brand/logo``: how the business looks and greets, for its pages
and for the chat widget wherever it is embedded. Public: a brand is no secret."""

from __future__ import annotations

import mimetypes
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel

from threadline.api.deps import ServiceDep
from threadline.api.documented import problem_responses
from threadline.api.problems import Problem
from threadline.business import Business

router = APIRouter(tags=["brand"])


class BrandOut(BaseModel):
    name: str
    widget_title: str
    tagline: str
    colours: dict[str, str]
    logo: str | None
    greeting: str | None
    disclosure: str | None
    welcome: str | None


def brand_of(business: Business) -> dict[str, Any]:
    """What a page or the widget shows of ``business``."""
    brand = business.pack.brand
    name = business.brand_name
    return {
        "name": name,
        "widget_title": (brand.widget_title if brand else None) or name,
        "tagline": brand.tagline if brand else "",
        "colours": dict(brand.colours) if brand else {},
        "logo": "/brand/logo" if brand and brand.logo else None,
        "greeting": business.text("greetings", "chat"),
        "disclosure": business.text("disclosures", "chat"),
        "welcome": business.text("greetings", "in_person"),
    }


@router.get("/brand", response_model=BrandOut)
async def brand(service: ServiceDep) -> dict[str, Any]:
    """The business's name, colours, logo and chat greeting and disclosure."""
    return brand_of(service.business)


@router.get("/brand/logo", response_class=FileResponse, responses=problem_responses(404))
async def logo(service: ServiceDep) -> FileResponse:
    """The business's logo, from its pack."""
    business = service.business
    name = business.pack.brand.logo if business.pack.brand else None
    if name is None:
        raise Problem(404, "not-found", "No logo", "the business pack names no logo")
    path = (business.root / name).resolve()
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=300"})
