"""The quarterly report's stylesheet, inlined into the page (no external resources)."""

from __future__ import annotations

from typing import Final

__all__ = ["CSS"]

CSS: Final = """
:root {
  --ink: #1f2328; --muted: #656d76; --line: #d8dee4; --zebra: #f6f8fa; --paper: #fff;
  --good: #1a7f37; --bad: #c9302c; --accent: #0969da;
  --good-bg: #dafbe1; --bad-bg: #ffebe9; --warn-bg: #fff8c5;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--paper); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", "Liberation Sans", sans-serif;
}
main { max-width: 1320px; margin: 0 auto; padding: 28px 32px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; font-weight: 650; }
h2 { font-size: 20px; margin: 40px 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 16px; margin: 24px 0 8px; display: flex; align-items: center; gap: 8px;
     flex-wrap: wrap; }
h2 small, h3 small { font-size: 13px; font-weight: 400; color: var(--muted); }
h3 small { margin-left: 4px; }
.meta, .note, .muted, footer { color: var(--muted); }
.note { margin: 4px 0 10px; max-width: 900px; }
.ok { color: var(--good); }
.lead { font-size: 15px; margin: 16px 0 0; max-width: 960px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
         margin-top: 20px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.card .label { color: var(--muted); font-size: 13px; }
.card .n { font-size: 28px; font-weight: 650; line-height: 1.25;
           font-variant-numeric: tabular-nums; }
.card .note { font-size: 12px; margin: 0; }
.card .grades { display: flex; align-items: center; gap: 6px; margin-top: 8px; }
.card .grades b { margin-right: 8px; font-size: 17px; }
nav.toc { margin: 20px 0 0; display: flex; flex-wrap: wrap; gap: 6px 8px; font-size: 13px; }
nav.toc a { color: var(--accent); text-decoration: none; padding: 2px 10px;
            border: 1px solid var(--line); border-radius: 999px; }
nav.toc a:hover { background: var(--zebra); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
figcaption { margin-bottom: 6px; }
figcaption span { display: block; color: var(--muted); font-size: 12px; }
svg.chart { display: block; max-width: 100%; height: auto; font-family: inherit; }
.scroll { overflow-x: auto; margin-top: 10px; border: 1px solid var(--line); border-radius: 6px;
          width: fit-content; max-width: 100%; }
table { border-collapse: collapse; width: 100%; font-size: 13px;
        font-variant-numeric: tabular-nums; }
.scroll table { border: 0; }
th, td { padding: 6px 10px; text-align: left; vertical-align: top;
         border-bottom: 1px solid var(--line); background: var(--paper); }
thead th { background: #eef1f4; font-weight: 600; vertical-align: bottom; white-space: nowrap; }
tbody tr:nth-child(even) td { background: var(--zebra); }
tbody tr:hover td { background: #eaf2fd; }
th.num, td.num { text-align: right; }
td.num { white-space: nowrap; }
table.data { border: 1px solid var(--line); }
table.kpis { max-width: 1000px; }
th small, td small { display: block; font-weight: 400; color: var(--muted); font-size: 11px; }
.name { display: block; font-weight: 500; }
.id { display: block; color: var(--muted); font-size: 11px; }
.matrix th:first-child, .matrix td:first-child { position: sticky; left: 0; z-index: 1;
  min-width: 180px; box-shadow: 1px 0 0 var(--line); }
.matrix th, .matrix td { padding: 6px 8px; }
.matrix th.kpi { min-width: 96px; white-space: normal; }
.matrix td.cell .v { display: block; font-weight: 600; }
.matrix td.cell .chg { display: block; font-size: 11px; }
.matrix tbody tr td.miss { background: #fff1f0; }
.mark { font-weight: 600; white-space: nowrap; }
.mark.met { color: var(--good); }
.mark.missed, .missed { color: var(--bad); }
.v .mark { margin-left: 4px; }
.chg { white-space: nowrap; }
.chg.good { color: var(--good); }
.chg.bad { color: var(--bad); }
.chg.flat { color: var(--muted); }
.grade { display: inline-block; min-width: 22px; padding: 0 6px; border-radius: 4px;
         text-align: center; font-weight: 700; font-size: 12px; line-height: 20px; }
.g-A { background: var(--good-bg); color: #116329; }
.g-B { background: #eaf5d9; color: #3d6b12; }
.g-C { background: var(--warn-bg); color: #7d4e00; }
.g-D { background: var(--bad-bg); color: #a40e26; }
.g-X { background: var(--zebra); color: var(--muted); }
.scope { font-size: 12px; font-weight: 500; color: var(--muted); border: 1px solid var(--line);
         border-radius: 999px; padding: 0 8px; }
section.kind { margin-top: 28px; }
footer { margin-top: 48px; padding-top: 12px; border-top: 1px solid var(--line); font-size: 12px; }
@media (max-width: 700px) {
  main { padding: 16px; }
  .charts { grid-template-columns: 1fr; }
}
@media print {
  main { max-width: none; padding: 0; }
  nav.toc { display: none; }
  .scroll { overflow: visible; }
  section.kind, figure { break-inside: avoid; }
}
"""
