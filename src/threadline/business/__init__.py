"""The business as configuration: a pack of files, loaded, checked and served.

Everything that differs between businesses (brand, greetings, numbers,
locations and hours, queues, staff, intents and slots, verification,
escalation, tools, knowledge) is data in a pack; the code knows the shapes,
never the names.
"""

from threadline.business.business import Business, Location, ReplyTemplate
from threadline.business.checker import json_schema, load, load_configured
from threadline.business.hours import Hours, WeeklyHours
from threadline.business.loader import PackError, Problem
from threadline.business.model import Pack

__all__ = [
    "Business",
    "Hours",
    "Location",
    "Pack",
    "PackError",
    "Problem",
    "ReplyTemplate",
    "WeeklyHours",
    "json_schema",
    "load",
    "load_configured",
]
