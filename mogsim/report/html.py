"""The HTML twin of a report: the same plan as the PDF in one self-contained file (inline SVG figures)."""

from __future__ import annotations

import re
from pathlib import Path

from .figures import svg_bytes
from .layout import (CLAIMS_CAPTION, CLAIMS_HEADER, REFERENCES, REPORT_TITLE, Plan, claims_label, section_number)
from .printed import resolve, structural
from .sections import Figure, Section

CSS = """body{font-family:"STIX Two Text","STIXGeneral","Times New Roman",serif;max-width:52rem;margin:2rem auto;
padding:0 1rem;line-height:1.4;color:#1a1a1a}h1,h2,h3{line-height:1.2}table{border-collapse:collapse;margin:.4rem 0 1rem;
font-size:.85rem}th,td{padding:.15rem .45rem;vertical-align:top;text-align:left}td.r,th.r{text-align:right}
thead tr:first-child th{border-top:1.5px solid #1a1a1a}thead tr:last-child th{border-bottom:1px solid #1a1a1a}
tbody tr:last-child td{border-bottom:1.5px solid #1a1a1a}figure{margin:1rem 0}figure svg{width:100%;height:auto}
figcaption,.caption{font-size:.9rem}.meta{color:#555;font-size:.85rem}.basis{font-size:.75rem;color:#444}"""


def _m(text: str) -> str:
    """Section markup as HTML (reportlab's ``<super>`` is HTML's ``<sup>``)."""
    return resolve(text).replace("<super", "<sup").replace("</super>", "</sup>")


def _figure(plan: Plan, fig: Figure) -> str:
    svg = svg_bytes(fig.draw()).decode("utf-8")
    svg = re.sub(r"^<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>\s*)?", "", svg)
    return f"<figure>{svg}<figcaption><b>{_m(plan.figure_label(fig))}</b> {_m(fig.caption)}</figcaption></figure>"


def _table(header: list[str], rows: list[list[str]], align: str, caption: str = "", label: str = "",
           groups: list[tuple[str, int]] | None = None) -> str:
    align = align or "l" * len(header)
    cls = [' class="r"' if a == "r" else "" for a in align]
    head = ""
    if groups:
        head += "<tr>" + "".join(f'<th colspan="{span}">{_m(text)}</th>' for text, span in groups) + "</tr>"
    head += "<tr>" + "".join(f"<th{c}>{_m(h)}</th>" for h, c in zip(header, cls)) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td{c}>{_m(v)}</td>" for v, c in zip(row, cls)) + "</tr>" for row in rows)
    cap = f'<p class="caption"><b>{_m(label)}</b> {_m(caption)}</p>' if caption else ""
    return f"{cap}<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def _section(plan: Plan, i: int, s: Section) -> str:
    out = [f"<h2>{_m(section_number(i))} {_m(s.title)}</h2>", f"<p><b>Question.</b> {_m(s.question)}</p>",
           f"<p><b>Answer.</b> {_m(s.answer)}</p>", f"<h3>{_m(section_number(i, 1))} Claims and measurements</h3>"]
    if s.claims:
        rows = [[c.paper, c.measured, f'<b>{c.agrees}</b><br/><span class="basis">{c.basis}</span>'] for c in s.claims]
        out.append(_table(CLAIMS_HEADER, rows, "lll", CLAIMS_CAPTION, claims_label(plan, s)))
    else:
        out.append("<p>This run tests no claim of the papers by itself; other experiments evaluate what it "
                   "produced.</p>")
    out.append(f"<h3>{_m(section_number(i, 2))} Methods</h3>")
    out += [f"<p>{_m(m)}</p>" for m in s.methods]
    out.append(f"<h3>{_m(section_number(i, 3))} Results</h3>")
    for fig in s.figures:
        out.append(f"<p>{_m(plan.figure_label(fig)[:-1])} (top) is this section's key figure.</p>" if fig is plan.key
                   else _figure(plan, fig))
    for t in s.tables:
        if not t.appendix:
            out.append(_table(t.header, t.rows, t.align, t.caption, plan.table_label(t), t.groups))
    if any(t.appendix for t in s.tables):
        out.append(f"<p>{_m(f'Appendix B lists {plan.appendix_note(s)}.')}</p>")
    sub = 3
    if s.notes:
        sub += 1
        out.append(f"<h3>{_m(section_number(i, sub))} Notes stored with the results</h3>")
        out += [f"<p>{_m(n)}</p>" for n in s.notes]
    if s.equations:
        sub += 1
        out.append(f"<h3>{_m(section_number(i, sub))} Derivations</h3>")
        for block in s.equations:
            out.append(f"<p>{_m(block.heading)}</p>")
            out += [_equation(tex) for tex in block.latex]
    return "\n".join(out)


def _equation(latex: str) -> str:
    from .figures import equation_figure
    from .printed import raw_text

    try:
        svg = svg_bytes(equation_figure(raw_text(latex)), tight=True).decode("utf-8")
    except ValueError:
        return f"<p><code>{_m(latex)}</code></p>"
    return '<div style="text-align:center">' + re.sub(r"^<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>\s*)?", "", svg) + "</div>"


def render_html(plan: Plan, folders: list[tuple[Path, str]]) -> str:
    """The whole report as one HTML page."""
    built = "; ".join(f"{structural(str(p), 'path')} ({k})" for p, k in folders)
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{REPORT_TITLE}</title>"
           f"<style>{CSS}</style></head><body>", f"<h1>{REPORT_TITLE}</h1>"]
    out += [f"<p>{_m(s.title)}</p>" for s in plan.sections]
    out.append(f'<p class="meta">{_m(f"Built from the run folders {built}. Every number in this report is read from their files.")}</p>')
    for s in plan.sections:
        out += [f"<p><b>Question.</b> {_m(s.question)}</p>", f"<p><b>Answer.</b> {_m(s.answer)}</p>"]
    if plan.key is not None:
        out.append(_figure(plan, plan.key))
    out += [_section(plan, i, s) for i, s in enumerate(plan.sections)]
    out.append("<h2>Appendix A. Provenance</h2>")
    for i, s in enumerate(plan.sections):
        out.append(f"<h3>A.{_m(section_number(i))} {_m(s.title)}</h3>")
        out.append(_table(["record", "value"], [[k, v] for k, v in s.provenance], "ll"))
    appendix = plan.appendix_tables()
    if appendix:
        out.append("<h2>Appendix B. Full tables</h2>")
        out += [_table(t.header, t.rows, t.align, t.caption, plan.table_label(t), t.groups) for _, t in appendix]
    out.append("<h2>References</h2><ol>" + "".join(f"<li>{_m(r)}</li>" for r in REFERENCES) + "</ol>")
    out.append("</body></html>")
    return "\n".join(out)
