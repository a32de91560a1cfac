"""Sections of ``bench/RESULTS.md`` that a benchmark owns: each between its own markers.

``make bench`` rewrites the dispatch figures at the top (``bench.run``); the scale and
fault benchmarks (``make bench-scale``) each replace only their own section, so one
benchmark's run never erases another's figures.
"""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Put ``markdown`` between ``<!-- name -->`` and ``<!-- /name -->``, replacing what
    was there, or at the end of the file if the section is new."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{markdown.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = f"{text.rstrip()}\n\n{block}" if text else block
    path.write_text(text)


def keep_sections(fresh: str, path: Path = RESULTS) -> str:
    """``fresh`` (the dispatch figures) followed by every owned section already in the file."""
    old = path.read_text() if path.exists() else ""
    kept = re.findall(r"<!-- ([\w-]+) -->.*?<!-- /\1 -->\n?", old, re.DOTALL)
    blocks = [
        m.group(0) for name in kept
        if (m := re.search(rf"<!-- {name} -->.*?<!-- /{name} -->\n?", old, re.DOTALL))
    ]  # fmt: skip
    return fresh.rstrip() + "\n\n" + "".join(blocks) if blocks else fresh
