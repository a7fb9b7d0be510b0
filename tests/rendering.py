"""Rendering the examples (examples/*.conf, units, wrappers) for a test: their
placeholders replaced by the test's paths, each checked to occur as often as
the example promises."""

from __future__ import annotations

import re
from pathlib import Path


def directives(text: str) -> str:
    """The lines that are not comments."""
    return "".join(line for line in text.splitlines(True) if not line.lstrip().startswith("#"))


def render(path: Path, replacements: dict[str, tuple[str, int]], leftovers=(), *,
           comments_too: bool = True) -> str:
    """The file with each placeholder replaced everywhere (comments too);
    each must occur exactly `count` times outside comments, and none of
    `leftovers` may be left afterwards (in comments either, with
    `comments_too`)."""
    text = path.read_text()
    for needle, (_, count) in replacements.items():
        found = directives(text).count(needle)
        assert found == count, f"{path} should contain {needle!r} {count} time(s) outside comments, has {found}"
    for needle, (value, _) in replacements.items():
        text = text.replace(needle, value)
    checked = text if comments_too else directives(text)
    for leftover in leftovers:
        assert leftover not in checked, f"{path}: {leftover!r} left after rendering"
    return text


def gateway_command(text: str) -> str:
    """The one `#   [NAME=VALUE ...] rustgi-gateway ...` line of an
    example's comment (variables first, as a shell takes them)."""
    lines = re.findall(r"^#\s+((?:[A-Z][A-Z0-9_]*=\S+\s+)*rustgi-gateway\s.*)$", text, re.M)
    assert len(lines) == 1, f"expected one rustgi-gateway command line in the comment, got {lines}"
    return lines[0]
