"""Typesetting a report as PDF with reportlab: selectable text in embedded STIX fonts, vector figures.

Figures are drawn by matplotlib as SVG (text as paths) and converted by svglib into reportlab drawings, so they stay
vector graphics inside the PDF. The body font is STIX (a Times-like face with Greek and mathematical symbols),
taken from matplotlib's own font files, so no TeX and no system fonts are needed. Every string goes through
:func:`~.printed.resolve`, which records each printed value in the build's ledger.
"""

from __future__ import annotations

import io
import re
from html import unescape
from pathlib import Path
from typing import Any

from reportlab.lib import colors
from reportlab.lib.enums import TA_JUSTIFY, TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (BaseDocTemplate, CondPageBreak, Flowable, Frame, KeepTogether, PageBreak,
                                PageTemplate, Paragraph, Spacer, Table as RLTable, TableStyle)

from .figures import svg_bytes
from .layout import CLAIMS_CAPTION, CLAIMS_HEADER, REFERENCES, REPORT_TITLE, Plan, claims_label, section_number
from .printed import Ledger, raw_text, resolve, structural
from .sections import Figure, Section

SERIF, SERIF_BOLD, SERIF_ITALIC, SERIF_BOLD_ITALIC = "STIX", "STIX-Bold", "STIX-Italic", "STIX-BoldItalic"
MARGIN = 1.9 * cm
INK = colors.HexColor("#1a1a1a")
GREY = colors.HexColor("#555555")


def register_fonts() -> None:
    """Register the STIX fonts that matplotlib ships (once)."""
    if SERIF in pdfmetrics.getRegisteredFontNames():
        return
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name, file in ((SERIF, "STIXGeneral.ttf"), (SERIF_BOLD, "STIXGeneralBol.ttf"),
                       (SERIF_ITALIC, "STIXGeneralItalic.ttf"), (SERIF_BOLD_ITALIC, "STIXGeneralBolIta.ttf")):
        pdfmetrics.registerFont(TTFont(name, str(folder / file)))
    pdfmetrics.registerFontFamily(SERIF, normal=SERIF, bold=SERIF_BOLD, italic=SERIF_ITALIC,
                                  boldItalic=SERIF_BOLD_ITALIC)


def _styles() -> dict[str, ParagraphStyle]:
    body = ParagraphStyle("body", fontName=SERIF, fontSize=10, leading=13.2, alignment=TA_JUSTIFY, textColor=INK,
                          spaceAfter=5)
    return {
        "title": ParagraphStyle("title", parent=body, fontName=SERIF_BOLD, fontSize=22, leading=26,
                                alignment=TA_LEFT, spaceAfter=6),
        "subtitle": ParagraphStyle("subtitle", parent=body, fontSize=12, leading=15, alignment=TA_LEFT,
                                   spaceAfter=2),
        "meta": ParagraphStyle("meta", parent=body, fontSize=8.5, leading=10.5, textColor=GREY, alignment=TA_LEFT),
        "h1": ParagraphStyle("h1", parent=body, fontName=SERIF_BOLD, fontSize=15, leading=18, spaceBefore=4,
                             spaceAfter=8, alignment=TA_LEFT),
        "h2": ParagraphStyle("h2", parent=body, fontName=SERIF_BOLD, fontSize=11.5, leading=14, spaceBefore=8,
                             spaceAfter=4, alignment=TA_LEFT),
        "body": body,
        "caption": ParagraphStyle("caption", parent=body, fontSize=8.8, leading=11, spaceBefore=3, spaceAfter=10),
        "cell": ParagraphStyle("cell", parent=body, fontSize=8, leading=9.6, alignment=TA_LEFT, spaceAfter=0),
        "cell_r": ParagraphStyle("cell_r", parent=body, fontSize=8, leading=9.6, alignment=TA_RIGHT, spaceAfter=0),
        "head": ParagraphStyle("head", parent=body, fontName=SERIF_BOLD, fontSize=8, leading=9.6,
                               alignment=TA_LEFT, spaceAfter=0),
        "head_r": ParagraphStyle("head_r", parent=body, fontName=SERIF_BOLD, fontSize=8, leading=9.6,
                                 alignment=TA_RIGHT, spaceAfter=0),
        "small": ParagraphStyle("small", parent=body, fontSize=7.5, leading=9, alignment=TA_LEFT, spaceAfter=0),
        "ref": ParagraphStyle("ref", parent=body, fontSize=9, leading=11, leftIndent=12, firstLineIndent=-12,
                              alignment=TA_LEFT),
    }


class VectorDrawing(Flowable):
    """SVG (from matplotlib) as a reportlab drawing: scaled to the frame width (at most ``max_height`` high), or with
    ``fill=False`` at its own size, shrunk only when wider than the frame and centred."""

    def __init__(self, svg: bytes, max_height: float | None = None, fill: bool = True) -> None:
        super().__init__()
        from svglib.svglib import svg2rlg

        self.drawing = svg2rlg(io.BytesIO(svg))
        self.max_height = max_height
        self.fill = fill
        self.scale = 1.0
        if not fill:
            self.hAlign = "CENTER"

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        d = self.drawing
        self.scale = avail_width / d.width if self.fill else min(1.0, avail_width / d.width)
        if self.max_height is not None:
            self.scale = min(self.scale, self.max_height / d.height)
        self.width, self.height = d.width * self.scale, d.height * self.scale
        return self.width, self.height

    def draw(self) -> None:
        self.canv.saveState()
        self.canv.scale(self.scale, self.scale)
        self.drawing.drawOn(self.canv, 0, 0)
        self.canv.restoreState()


class _Doc(BaseDocTemplate):
    """Adds PDF bookmarks for headings (flowables carrying ``_bookmark``)."""

    def afterFlowable(self, flowable: Flowable) -> None:
        mark = getattr(flowable, "_bookmark", None)
        if mark is not None:
            title, level = mark
            key = f"h{id(flowable)}"
            self.canv.bookmarkPage(key)
            self.canv.addOutlineEntry(title, key, level=level, closed=level > 0)


def _built_by() -> str:
    """The mogsim version and commit that typeset the report (PDF metadata only: the text prints run files)."""
    from ..provenance import git_commit, versions

    return f"mogsim {versions().get('mogsim')}, commit {git_commit()}"


def _plain(markup: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", markup))


class Typesetter:
    """Turns a :class:`Plan` into flowables and writes the PDF."""

    def __init__(self, plan: Plan, ledger: Ledger) -> None:
        register_fonts()
        self.plan = plan
        self.ledger = ledger
        self.st = _styles()
        self.width = A4[0] - 2 * MARGIN

    # -- small pieces ------------------------------------------------------------------------------------------------
    def para(self, text: str, style: str = "body") -> Paragraph:
        st = self.st[style]
        small = round(st.fontSize * 0.72, 1)
        markup = resolve(text).replace("<sub>", f'<sub rise="{st.fontSize * 0.22:.1f}" size="{small}">').replace(
            "<super>", f'<super rise="{st.fontSize * 0.38:.1f}" size="{small}">')
        return Paragraph(markup, st)

    def heading(self, text: str, style: str, level: int) -> Paragraph:
        p = self.para(text, style)
        p._bookmark = (_plain(p.text), level)  # type: ignore[attr-defined]
        return p

    def figure(self, fig: Figure, max_height: float | None = None) -> Flowable:
        caption = self.para(f"<b>{self.plan.figure_label(fig)}</b> {fig.caption}", "caption")
        return KeepTogether([VectorDrawing(svg_bytes(fig.draw()), max_height), caption])

    def table(self, header: list[str], rows: list[list[str]], align: str = "", widths: list[float] | None = None,
              caption: str = "", label: str = "", groups: list[tuple[str, int]] | None = None) -> list[Flowable]:
        align = align or "l" * len(header)
        head = [self.para(h, "head_r" if a == "r" else "head") for h, a in zip(header, align)]
        body = [[self.para(c, "cell_r" if a == "r" else "cell") for c, a in zip(row, align)] for row in rows]
        col_widths = self._widths([head] + body, align, widths)
        style = [("VALIGN", (0, 0), (-1, -1), "TOP"),
                 ("TOPPADDING", (0, 0), (-1, -1), 1.6), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.6),
                 ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3)]
        top: list[list[Any]] = []
        if groups:
            cells: list[Any] = []
            start = 0
            for text, span in groups:
                cells += [self.para(text, "head")] + [""] * (span - 1)
                if span > 1:
                    style.append(("SPAN", (start, 0), (start + span - 1, 0)))
                if text:
                    style.append(("LINEBELOW", (start, 0), (start + span - 1, 0), 0.4, INK))
                start += span
            top = [cells]
        n_head = len(top) + 1
        style += [("LINEABOVE", (0, 0), (-1, 0), 0.9, INK), ("LINEBELOW", (0, n_head - 1), (-1, n_head - 1), 0.5, INK),
                  ("LINEBELOW", (0, -1), (-1, -1), 0.9, INK)]
        t = RLTable(top + [head] + body, colWidths=col_widths, repeatRows=n_head, hAlign="LEFT")
        t.setStyle(TableStyle(style))
        out: list[Flowable] = []
        if caption:
            out.append(self.para(f"<b>{label}</b> {caption}", "caption"))
        out.append(t)
        out.append(Spacer(1, 10))
        return [KeepTogether(out)] if len(rows) < 25 else out

    def _widths(self, cells: list[list[Paragraph]], align: str, widths: list[float] | None) -> list[float]:
        if widths is not None:
            return [self.width * w / sum(widths) for w in widths]
        pad = 6.5
        natural = []
        for j in range(len(align)):
            w = max(pdfmetrics.stringWidth(_plain(row[j].text), row[j].style.fontName, row[j].style.fontSize)
                    for row in cells)
            natural.append(w + pad)
        if sum(natural) <= self.width:
            return natural
        fixed = sum(w for w, a in zip(natural, align) if a == "r")
        flexible = [w for w, a in zip(natural, align) if a != "r"]
        room = max(self.width - fixed, 60.0 * len(flexible))
        scale = room / sum(flexible) if flexible else 1.0
        return [w if a == "r" else max(w * scale, 40.0) for w, a in zip(natural, align)]

    # -- the document ------------------------------------------------------------------------------------------------
    def title_page(self, folders: list[tuple[Path, str]]) -> list[Flowable]:
        story: list[Flowable] = [self.heading(REPORT_TITLE, "title", 0)]
        for section in self.plan.sections:
            story.append(self.para(section.title, "subtitle"))
        built = "; ".join(f"{structural(str(path), 'path')} ({kind})" for path, kind in folders)
        story += [Spacer(1, 4), self.para(f"Built from the run folders {built}. Every number in this report is "
                                          "read from their files; appendix A gives their provenance.", "meta"),
                  Spacer(1, 10)]
        for section in self.plan.sections:
            story.append(self.para(f"<b>Question.</b> {section.question}"))
            story.append(self.para(f"<b>Answer.</b> {section.answer}"))
        if self.plan.key is not None:
            story += [Spacer(1, 6), self.figure(self.plan.key, max_height=0.5 * A4[1])]
        return story

    def section(self, i: int, section: Section) -> list[Flowable]:
        story: list[Flowable] = [PageBreak(), self.heading(f"{section_number(i)} {section.title}", "h1", 0)]
        story.append(self.para(f"<b>Question.</b> {section.question}"))
        story.append(self.para(f"<b>Answer.</b> {section.answer}"))
        sub = 1
        story.append(self.heading(f"{section_number(i, sub)} Claims and measurements", "h2", 1))
        if section.claims:
            rows = [[c.paper, c.measured, f"<b>{c.agrees}</b><br/><font size='7'>{c.basis}</font>"]
                    for c in section.claims]
            story += self.table(CLAIMS_HEADER, rows, "lll", [0.38, 0.44, 0.18], CLAIMS_CAPTION,
                                claims_label(self.plan, section))
        else:
            story.append(self.para("This run tests no claim of the papers by itself; other experiments evaluate what "
                                   "it produced."))
        sub += 1
        story.append(self.heading(f"{section_number(i, sub)} Methods", "h2", 1))
        story += [self.para(m) for m in section.methods]
        sub += 1
        story.append(self.heading(f"{section_number(i, sub)} Results", "h2", 1))
        for fig in section.figures:
            if fig is self.plan.key:
                story.append(self.para(f"{self.plan.figure_label(fig)[:-1]} (page one) is this section's key "
                                       "figure."))
            else:
                story.append(self.figure(fig))
        for table in section.tables:
            if not table.appendix:
                story += self.table(table.header, table.rows, table.align, table.widths, table.caption,
                                    self.plan.table_label(table), table.groups)
        if any(t.appendix for t in section.tables):
            story.append(self.para(f"Appendix B lists {self.plan.appendix_note(section)}."))
        if section.notes:
            sub += 1
            story.append(CondPageBreak(60))
            story.append(self.heading(f"{section_number(i, sub)} Notes stored with the results", "h2", 1))
            story += [self.para(n) for n in section.notes]
        if section.equations:
            sub += 1
            story.append(self.heading(f"{section_number(i, sub)} Derivations", "h2", 1))
            for block in section.equations:
                story.append(CondPageBreak(50))
                story.append(self.para(block.heading))
                for tex in block.latex:
                    story += [self.equation(tex), Spacer(1, 4)]
        return story

    def equation(self, latex: str) -> Flowable:
        """A displayed equation (``latex`` holds a stored string's placeholder); LaTeX that matplotlib's mathtext
        cannot typeset is shown as its source text."""
        from .figures import equation_figure

        try:
            return VectorDrawing(svg_bytes(equation_figure(raw_text(latex)), tight=True), fill=False)
        except ValueError:
            return self.para(latex, "small")

    def appendix(self) -> list[Flowable]:
        story: list[Flowable] = [PageBreak(), self.heading("Appendix A. Provenance", "h1", 0)]
        story.append(self.para("For each section: the commands, times, code version, libraries, device and "
                               "configuration recorded in the run's files."))
        for i, section in enumerate(self.plan.sections):
            story.append(self.heading(f"A.{section_number(i)} {section.title}", "h2", 1))
            story.append(self.para(f"Folder: {structural(str(section.folder), 'path')}", "small"))
            rows = [[label, value] for label, value in section.provenance]
            if rows:
                story += self.table(["record", "value"], rows, "ll", [0.22, 0.78])
        long_tables = self.plan.appendix_tables()
        if long_tables:
            story += [PageBreak(), self.heading("Appendix B. Full tables", "h1", 0)]
            for _, table in long_tables:
                story += self.table(table.header, table.rows, table.align, table.widths, table.caption,
                                    self.plan.table_label(table), table.groups)
        story.append(CondPageBreak(120))
        story.append(self.heading("References", "h2", 0))
        story += [self.para(ref, "ref") for ref in REFERENCES]
        return story

    def write(self, path: Path, folders: list[tuple[Path, str]]) -> int:
        """Write the PDF to ``path``; returns the number of pages."""
        story = self.title_page(folders)
        for i, section in enumerate(self.plan.sections):
            story += self.section(i, section)
        story += self.appendix()
        ledger = self.ledger

        def footer(canvas: Any, doc: Any) -> None:
            canvas.saveState()
            canvas.setFont(SERIF, 8)
            canvas.setFillColor(GREY)
            page = ledger.record(structural(doc.page, "page"))
            canvas.drawRightString(A4[0] - MARGIN, MARGIN * 0.55, f"{REPORT_TITLE} · page {page}")
            canvas.restoreState()

        doc = _Doc(str(path), pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                   bottomMargin=MARGIN, title=REPORT_TITLE + ": " + ", ".join(s.kind for s in self.plan.sections),
                   author="mogsim", creator=f"mogsim report ({_built_by()})",
                   subject="Claims, measurements and provenance of runs")
        frame = Frame(MARGIN, MARGIN, self.width, A4[1] - 2 * MARGIN, id="body", leftPadding=0, rightPadding=0,
                      topPadding=0, bottomPadding=0)
        doc.addPageTemplates([PageTemplate("page", [frame], onPage=footer)])
        doc.build(story)
        return doc.page
