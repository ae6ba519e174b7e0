"""The order and numbering of a report, shared by the PDF and the HTML twin.

Page one holds the question and answer of every section and the first section's key figure (Figure 1). Each
section follows with its claims table, methods, figures, tables and notes; appendix A holds the provenance of each
section, appendix B the long tables. Figures and tables are numbered in the order a reader meets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .printed import structural
from .sections import Figure, Section, Table

REPORT_TITLE = "mogsim report"

#: The works the sections cite (structural years only).
REFERENCES = (
    "Zhang, Zhou, Lu, Guo, Wang, Shen, Qu. The Emergence of Reproducibility and Consistency in Diffusion Models. "
    "ICML {}.".format(structural(2024, "citation")),
    "Wang, Zhang, Zhang, Chen, Ma, Qu. Diffusion Models Learn Low-Dimensional Distributions via Subspace "
    "Clustering. arXiv {}.".format(structural("2409.02426", "citation")),
    "Karras, Aittala, Aila, Laine. Elucidating the Design Space of Diffusion-Based Generative Models (EDM). "
    "NeurIPS {}.".format(structural(2022, "citation")),
)


@dataclass
class Plan:
    """Where everything goes and which number it carries."""

    sections: list[Section]
    key: Figure | None = None
    figure_numbers: dict[int, int] = field(default_factory=dict)
    table_numbers: dict[int, int] = field(default_factory=dict)

    def figure_label(self, figure: Figure) -> str:
        return "Figure {}.".format(structural(self.figure_numbers[id(figure)], "figure"))

    def table_label(self, table: Table) -> str:
        return "Table {}.".format(structural(self.table_numbers[id(table)], "table"))

    def appendix_tables(self) -> list[tuple[Section, Table]]:
        return [(s, t) for s in self.sections for t in s.tables if t.appendix]

    def appendix_note(self, section: Section) -> str:
        """``Table 6`` or ``Tables 6 to 9``: the section's tables in appendix B."""
        numbers = [self.table_numbers[id(t)] for t in section.tables if t.appendix]
        if len(numbers) == 1:
            return "Table {}".format(structural(numbers[0], "table"))
        return "Tables {} to {}".format(structural(numbers[0], "table"), structural(numbers[-1], "table"))


def section_number(i: int, sub: int | None = None) -> str:
    """``3`` or ``3.2`` as a structural number."""
    return f"{structural(i + 1, 'section')}" if sub is None else f"{structural(f'{i + 1}.{sub}', 'section')}"


def plan(sections: list[Section]) -> Plan:
    """Number figures and tables in reading order (the key figure of the first section is Figure 1)."""
    p = Plan(sections)
    if sections:
        p.key = next((fig for fig in sections[0].figures if fig.key), None)
    figure_no = table_no = 0
    if p.key is not None:
        figure_no = p.figure_numbers[id(p.key)] = 1
    for section in sections:
        if section.claims:
            table_no += 1
            p.table_numbers[id(section.claims)] = table_no
        for fig in section.figures:
            if id(fig) not in p.figure_numbers:
                figure_no += 1
                p.figure_numbers[id(fig)] = figure_no
        for table in section.tables:
            if not table.appendix:
                table_no += 1
                p.table_numbers[id(table)] = table_no
    for _, table in p.appendix_tables():
        table_no += 1
        p.table_numbers[id(table)] = table_no
    return p


def claims_label(p: Plan, section: Section) -> str:
    return "Table {}.".format(structural(p.table_numbers[id(section.claims)], "table"))


CLAIMS_CAPTION = ("What the papers claim, what the run's files hold, and whether they agree; “agrees?” is read from "
                  "stored values only, on the basis given under it.")
CLAIMS_HEADER = ["What the paper claims", "What we measured", "Agrees?"]
