"""An HTML page built section by section (figures become embedded PNGs), and writing the
report's plot folder atomically."""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Any

from polytask import io
from polytask.errors import PolytaskError
from polytask.evaluation.plots import png_bytes

REPORT = "report.html"

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-top: 8px; border-top: 1px solid #e3e5e8; }
p, li { line-height: 1.45; font-size: 14px; }
.meta { color: #555; font-size: 13px; }
.formula { background: #f3f6fb; border-left: 4px solid #4a78c2; padding: 8px 12px;
           font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid #e3e5e8; padding: 5px 10px; text-align: right;
         white-space: nowrap; }
th { background: #f3f4f6; font-weight: 600; }
td:first-child, th:first-child { text-align: left; }
table.left2 td:nth-child(2), table.left2 th:nth-child(2) { text-align: left; }
td.label { text-align: left; }
tr.chosen td { font-weight: 700; background: #fff8e1; }
.good { color: #1b7f2a; font-weight: 600; }
.bad { color: #c62828; font-weight: 700; }
.muted { color: #777; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; }
.row { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.row figure { flex: 1 1 420px; }
.scroll { overflow-x: auto; }
"""


# -- files ----------------------------------------------------------------------------------------


def plots_dir(output: Path) -> Path:
    """Where the report's PNG files go: ``report_plots/`` beside ``report.html``."""
    return output.with_name(f"{output.stem}_plots")


def replace_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a new folder and swap it in for ``folder`` (which, if it exists,
    must hold only PNG files: an earlier report's plots)."""
    foreign = folder.exists() and (
        not folder.is_dir()
        or any(not (f.is_file() and f.suffix == ".png") for f in folder.iterdir())
    )
    if foreign:
        raise PolytaskError(
            f"'{folder}' exists and holds more than report plots; move it away or "
            "choose another `output`"
        )
    io.replace_folder(folder, files)


# -- the page -----------------------------------------------------------------------------------


class Page:
    """An HTML page built section by section; figures become embedded PNGs."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.images: dict[str, bytes] = {}

    def h1(self, text: str) -> None:
        self.parts.append(f"<h1>{html.escape(text)}</h1>")

    def h2(self, text: str, anchor: str | None = None) -> None:
        aid = f' id="{anchor}"' if anchor else ""
        self.parts.append(f"<h2{aid}>{html.escape(text)}</h2>")

    def p(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def items(self, lines: list[str]) -> None:
        if lines:
            self.parts.append(
                "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>"
            )

    def table(
        self,
        head: list[str],
        rows: list[list[str]],
        row_classes: list[str | None] | None = None,
        cell_classes: list[list[str | None]] | None = None,
        left: int = 1,
    ) -> None:
        """``left``: how many leading columns hold text (left-aligned)."""
        out = [f'<div class="scroll"><table class="left{left}"><thead><tr>']
        out += [f"<th>{html.escape(h)}</th>" for h in head]
        out.append("</tr></thead><tbody>")
        for i, row in enumerate(rows):
            rc = row_classes[i] if row_classes else None
            out.append(f'<tr class="{rc}">' if rc else "<tr>")
            for j, cell in enumerate(row):
                cc = cell_classes[i][j] if cell_classes else None
                c = f' class="{cc}"' if cc else ""
                out.append(f"<td{c}>{html.escape(cell)}</td>")
            out.append("</tr>")
        out.append("</tbody></table></div>")
        self.parts.append("".join(out))

    def figure(self, name: str, fig: Any, caption: str = "") -> bool:
        if fig is None:
            return False
        data = png_bytes(fig)
        self.images[f"{name}.png"] = data
        b64 = base64.b64encode(data).decode("ascii")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(
            f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">'
            f"{cap}</figure>"
        )
        return True

    def html(self) -> str:
        body = "\n".join(self.parts)
        stamp = time.strftime("%Y-%m-%d %H:%M")
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head>"
            f"<body><main>\n{body}\n"
            f'<p class="meta">Written by polytask on {stamp}.</p></main></body></html>\n'
        )
