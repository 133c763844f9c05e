"""Production strictness: what the tiers refuse to start with when they serve a network (docs/configuration.md).

"Production" is where the tiers listen on an address other than loopback (`JOBCAST_BIND`:
the image and docker-compose.yml set 0.0.0.0): others can reach them, so a key anyone can
know or a debug page would be theirs too. `make run`, `jobcast run` and the tests listen on
127.0.0.1 and keep the embedded defaults (a key generated into the data dir). The same
problems are the `check --deploy` errors jobcast.E001, E002 and E004 (jobcast.jobs.checks).
"""

from __future__ import annotations

import ipaddress

MIN_SECRET_KEY_CHARS = 32
# Placeholders a copied example carries (.env.example's), and the prefix of the key Django's
# startproject writes: known to everyone who has read the example.
PLACEHOLDER_SECRET_KEYS = frozenset({"change-me-to-a-long-random-string"})
INSECURE_KEY_PREFIX = "django-insecure-"


def is_loopback(bind: str) -> bool:
    """Whether an address the tiers listen on is reachable from this machine only."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable


def production_problems(settings) -> list[tuple[str, str]]:
    """(check id, one-line message) for each setting production must not have."""
    problems = []
    if settings.DEBUG:
        problems.append(("jobcast.E002", "DEBUG is on: set DEBUG=false."))
    key = settings.SECRET_KEY or ""
    if not getattr(settings, "SECRET_KEY_FROM_ENV", True):  # jobcast's standalone settings say; a product's are its own
        problems.append(("jobcast.E001", "SECRET_KEY is not set (a key generated into the data dir is not shared "
                                         "by the other processes): set SECRET_KEY to a long random string."))
    elif key in PLACEHOLDER_SECRET_KEYS or key.startswith(INSECURE_KEY_PREFIX) or len(key) < MIN_SECRET_KEY_CHARS:
        problems.append(("jobcast.E004", f"SECRET_KEY is a placeholder or shorter than {MIN_SECRET_KEY_CHARS} "
                                         "characters: set it to a long random string."))
    return problems


def production_refusal(settings, bind: str) -> str | None:
    """The one-line reason the tiers refuse to start listening on `bind`, or None when they may."""
    if is_loopback(bind):
        return None
    problems = production_problems(settings)
    if not problems:
        return None
    return f"jobcast: refusing to start on {bind} (production): " + " ".join(message for _, message in problems)
