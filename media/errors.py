"""Why a probe stopped: one exception whose text is the short human reason stored in `MediaFacts.error`."""

from __future__ import annotations


class ProbeError(Exception):
    """The object cannot be understood; the message is shown to people as-is, so it is short and specific."""
