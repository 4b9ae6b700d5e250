from pathlib import Path

from prescale.app.settings import reference_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_reference_is_generated_from_settings():
    text = README.read_text()
    marker = "<!-- config-reference:start -->\n"
    start = text.index(marker) + len(marker)
    end = text.index("<!-- config-reference:end -->")
    hint = "run `python -m prescale.scripts.update_readme_reference`"
    assert text[start:end] == reference_markdown(), hint
