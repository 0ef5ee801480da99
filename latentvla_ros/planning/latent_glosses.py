"""Words for latent action codes, for RViz: "brake → hold speed → gentle left".

The names come from the LAM's gloss file (``lam_v2.0_gloss.json``: per code, what the
ego did on average while the code was active), written when the LAM was evaluated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def load_glosses(path: Path) -> dict[int, str]:
    """code -> name; empty when the file is missing (the text then shows code numbers)."""
    path = Path(path)
    if not path.is_file():
        return {}
    return {int(entry["code"]): str(entry["name"]) for entry in json.loads(path.read_text())}


def gloss_text(tokens: Sequence[int], glosses: dict[int, str], steps: int = 12) -> str:
    """The first ``steps`` tokens as words, consecutive repeats merged."""
    words: list[str] = []
    for token in list(tokens)[:steps]:
        word = glosses.get(int(token), f"code {int(token)}")
        if not words or words[-1] != word:
            words.append(word)
    return " → ".join(words)
