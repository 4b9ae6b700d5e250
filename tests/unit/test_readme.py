from pathlib import Path

from prescale.app.settings import reference_markdown

CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "CONFIGURATION.md"


def test_config_reference_is_generated_from_settings():
    text = CONFIGURATION.read_text()
    marker = "<!-- config-reference:start -->\n"
    start = text.index(marker) + len(marker)
    end = text.index("<!-- config-reference:end -->")
    hint = "run `python -m prescale.scripts.update_config_reference`"
    assert text[start:end] == reference_markdown(), hint
