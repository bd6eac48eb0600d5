"""The plug-in contract: the subscribe message, and the documented example plug-in."""

from __future__ import annotations

from pathlib import Path

from candlecast.formats.contract import subscribe_message
from tests import example_format

ROOT = Path(__file__).resolve().parents[3]


def test_subscribe_message_decodes_or_gives_none() -> None:
    assert subscribe_message('{"op":"subscribe"}') == {"op": "subscribe"}
    assert subscribe_message(None) is None
    assert subscribe_message("{") is None


def test_the_docs_show_the_example_plugin_verbatim() -> None:
    doc = (ROOT / "docs" / "formats.md").read_text()
    source = Path(example_format.__file__).read_text()
    assert source in doc
