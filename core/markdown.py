"""The one Markdown table writer (reports, verification, comparisons, the prepare report)."""

from __future__ import annotations


def table(head: list[str], rows: list[list], align: str = "") -> str:
    """A pipe table; `align` has one letter per column, "l" or "r" (default: every column left-aligned)."""
    align = align or "l" * len(head)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
