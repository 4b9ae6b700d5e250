"""Regenerate the configuration reference in docs/CONFIGURATION.md from app/settings.py."""

from __future__ import annotations

from pathlib import Path

from prescale.app.settings import reference_markdown

START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"


def main() -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "CONFIGURATION.md"
    text = doc.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + START + reference_markdown() + END + tail)


if __name__ == "__main__":
    main()
