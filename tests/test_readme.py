"""The README's examples leave the tree clean: every file they write in the project's root is ignored by git."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# an option followed by a file name written in lower case (FILE, DIR and the like are placeholders)
WRITES = re.compile(r"--(?:out|output|report|json|csv) ([a-z][\w.-]*\.[a-z]+)\b")


def test_every_file_the_readmes_examples_write_is_ignored_by_git():
    written = sorted(set(WRITES.findall((ROOT / "README.md").read_text(encoding="utf-8"))))
    assert "demo-log.parquet" in written and "report.html" in written, written  # the pattern still finds them
    # evaluate writes its figures beside the report
    written += [str(Path(name).with_suffix(".json")) for name in written if name.endswith(".html")]
    for name in written:
        checked = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT, capture_output=True)
        assert checked.returncode == 0, f"{name}: written by a README example, not in .gitignore"
