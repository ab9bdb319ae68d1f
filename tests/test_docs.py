"""The package's documentation stands alone (issue 17, item 17): nothing points outside the repository,
and every "docs/model.md, section N" reference names a section that exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "README.md", *ROOT.glob("samsvae_pyro/**/*.py"), *ROOT.glob("configs/*.yaml"),
           *ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("benchmarks/*.py")]


def test_no_reference_to_a_specification_outside_the_repository():
    offenders = [str(path.relative_to(ROOT)) for path in SOURCES
                 if re.search(r"shared/spec|\bspec sections?\b", path.read_text())]
    assert offenders == []


def test_every_model_md_section_reference_exists():
    headings = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "model.md").read_text(), flags=re.M))
    cited = set()
    for path in SOURCES:
        for numbers in re.findall(r"docs/model\.md,\s+sections?\s+([\d\s,and-]+)", path.read_text()):
            cited |= set(re.findall(r"\d+", numbers))
    assert cited and cited <= headings, cited - headings
    assert "arXiv:2311.02794" in (ROOT / "docs" / "model.md").read_text()  # the paper is cited
