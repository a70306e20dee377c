"""The documentation's Python examples run.

Every ```python block of README.md and docs/*.md is executed: the blocks of one page in order,
in one namespace, in a temporary working directory, offline. A block that cannot run here (it
needs the internet, a GPU, hours, or files the reader brings) is preceded by a visible
``<!-- not run: reason -->`` comment, and the reason may not be empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"^<!--\s*not run:(.*?)-->\s*$")
FENCE = re.compile(r"^```(\S*)")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the first line of code
    language: str
    code: str
    not_run: str | None  # the reason, when the block is marked


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a markdown page, with the ``not run`` mark before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = NOT_RUN.match(previous.strip())
        found.append(Block(page, start + 1, fence.group(1), "\n".join(lines[start:end]),
                           mark.group(1).strip() if mark else None))
        i = end + 1
    return found


def marks(page: Path) -> list[tuple[int, str]]:
    """Every ``not run`` comment of a page: (1-based line, the line)."""
    return [(n, line) for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
            if line.lstrip().startswith("<!--") and "not run" in line]


def python_pages() -> list[Path]:
    return [p for p in PAGES if any(b.language == "python" for b in blocks(p))]


def test_every_not_run_mark_has_a_reason_and_a_python_block():
    marked = {(b.page, b.line) for p in PAGES for b in blocks(p) if b.not_run is not None}
    problems = []
    for page in PAGES:
        page_blocks = blocks(page)
        for line_number, line in marks(page):
            reason = NOT_RUN.match(line.strip())
            if reason is None or not reason.group(1).strip():
                problems.append(f"{page.name}:{line_number}: a 'not run' mark needs a reason")
                continue
            block = next((b for b in page_blocks if b.line > line_number), None)
            if block is None or (page, block.line) not in marked or block.language != "python":
                problems.append(f"{page.name}:{line_number}: the mark is not right before a "
                                "```python block")
    assert not problems, "\n".join(problems)


def test_few_blocks_are_not_run():
    python = [b for p in PAGES for b in blocks(p) if b.language == "python"]
    skipped = [b for b in python if b.not_run is not None]
    assert python and len(skipped) <= len(python) // 3, [f"{b.page.name}:{b.line}" for b in skipped]


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    # CI runs the README's test command; both commands stay exactly as they are.
    assert 'python -m pip install ".[plots]" && mdwarf-zoo demo --out demo_run' in text
    test_command = 'python -m pip install ".[test,plots]" && pytest'
    assert f"**Run the tests**:\n```bash\n{test_command}\n```" in text


def test_no_page_points_outside_the_repository():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert "shared/docs" not in text and "METHOD.md" not in text, page.name


@pytest.mark.parametrize("page", python_pages(), ids=lambda p: p.name)
def test_python_examples_run(page: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for block in blocks(page):
        if block.language != "python" or block.not_run is not None:
            continue
        # Padding keeps the markdown's line numbers in a traceback.
        source = "\n" * (block.line - 1) + block.code
        exec(compile(source, str(page.relative_to(ROOT)), "exec"), namespace)  # noqa: S102
