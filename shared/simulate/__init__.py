"""The campaign simulator: synthetic prospects that click ads, fill forms and react to
the emails Trayecto sends them, through ingest's public API and the tracked links only.
"""

from .driver import simulate
from .links import ReceivedEmail, TrackedLinks, extract_links, parse_email
from .plan import ProspectPlan, Reaction, choose_persona, plan_prospect, react
from .profile import Profile, ProfileError, load_profile, parse_profile
from .stats import Stats

__all__ = [
    "Profile",
    "ProfileError",
    "ProspectPlan",
    "Reaction",
    "ReceivedEmail",
    "Stats",
    "TrackedLinks",
    "choose_persona",
    "extract_links",
    "load_profile",
    "parse_email",
    "parse_profile",
    "plan_prospect",
    "react",
    "simulate",
]
