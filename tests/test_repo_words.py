"""The repo speaks of the product: no work-log words, workplace tools or machine paths in tracked files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Work history belongs in git log; a user cannot act on a work-period label or a path on another
# machine. Each word is spelled with a (?:...) group inside it, so this file does not hold them itself.
FORBIDDEN = re.compile(
    r"\b(?:se(?:ss)ions?|lea(?:se)s?|le(?:n)t|borr(?:o)wed|suba(?:g)ents?|farm-(?:b)ench)\b|/w(?:o)rk/|/ch(?:e)ck/|/opt/t(?:o)rch",
    re.IGNORECASE,
)
TEXT = {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".txt", ".cfg", ""}


def tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.splitlines() if Path(p).suffix in TEXT and (ROOT / p).is_file()]


def test_tracked_files_carry_no_work_history_or_machine_paths() -> None:
    hits = []
    for path in tracked_text_files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not hits, "work-log words or machine paths:\n" + "\n".join(hits)
