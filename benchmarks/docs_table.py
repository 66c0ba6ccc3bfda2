"""Replace a generated table in a docs page: the lines between a start marker's line and an end marker."""

from __future__ import annotations

from pathlib import Path


def write_between(page: Path, start_marker: str, end_marker: str, text: str) -> None:
    content = page.read_text(encoding="utf-8")
    start = content.index("\n", content.index(start_marker)) + 1
    end = content.index(end_marker)
    page.write_text(content[:start] + text + content[end:], encoding="utf-8")
