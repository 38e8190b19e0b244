"""README.md and the model cards say what benchmarks/results/*.json and the bundled genforge.json say.

``benchmarks/report.py --check`` regenerates every generated section and fails on any difference;
these tests run it on the real files, and on copies with a figure changed, to show it can fail.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "benchmarks" / "report.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
import report  # noqa: E402


def run_check(root: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPORT), "--check", "--root", str(root)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def copy_tree(dest: Path) -> Path:
    for rel in report.SECTIONS:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, dest / rel)
    return dest


def test_readme_and_cards_match_report() -> None:
    proc = run_check()
    assert proc.returncode == 0, "README/model cards drifted from benchmarks/report.py; run " \
                                 "`python benchmarks/report.py --write`:\n" + proc.stdout[-6000:]


def generated(text: str, name: str) -> str:
    start, end = report.markers(name)
    return text.split(start, 1)[1].split(end, 1)[0]


@pytest.mark.parametrize(("rel", "section"), [(rel, name) for rel, secs in report.SECTIONS.items() for name in secs])
def test_check_fails_when_a_figure_is_edited(tmp_path: Path, rel: str, section: str) -> None:
    root = copy_tree(tmp_path)
    path = root / rel
    text = path.read_text()
    body = generated(text, section)
    digits = re.search(r"\d", body)
    assert digits, f"section {section} of {rel} has no figure"
    i = text.index(body) + digits.start()
    path.write_text(text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:])  # one digit changed
    proc = run_check(root)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert rel in proc.stdout and "differ" in proc.stderr
    # and --write repairs it
    subprocess.run([sys.executable, str(REPORT), "--write", "--root", str(root)], check=True, timeout=120)
    assert run_check(root).returncode == 0


def test_check_fails_when_markers_are_missing(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace(report.markers("results")[1], ""))
    proc = run_check(root)
    assert proc.returncode != 0 and "results" in (proc.stdout + proc.stderr)


def test_figures_outside_generated_sections_are_not_results() -> None:
    """Measured figures that once were typed by hand must not come back outside the sections."""
    text = (ROOT / "README.md").read_text()
    for name in report.SECTIONS["README.md"]:
        start, end = report.markers(name)
        head, rest = text.split(start, 1)
        text = head + rest.split(end, 1)[1]
    for typed in (" tokens/s |", "nats/char", "1.886", "2.314", "1.262", "H200", " MB in fp16", "M parameters",
                  "faster decode (~", "5.06 M"):
        assert typed not in text, typed
