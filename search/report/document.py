"""The report as a document: headings, paragraphs, tables and figures, built once and
rendered twice, as Markdown (report.md, figures beside it) and as a self-contained HTML
page (report.html, figures embedded), so the two never say different things."""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

CODE = re.compile(r"`([^`]+)`")  # Markdown's inline code, in the HTML version


@dataclass(frozen=True)
class Plot:
    name: str  # file name, e.g. "delta.png"
    png: bytes
    caption: str


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def text(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", frame))

    def figure(self, figure: Plot) -> None:
        self.blocks.append(("figure", figure))

    @property
    def figures(self) -> list[Plot]:
        return [b for kind, b in self.blocks if kind == "figure"]

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, block in self.blocks:
            if kind == "h2":
                out += [f"## {block}", ""]
            elif kind == "p":
                out += [block, ""]
            elif kind == "table":
                out += [_markdown_table(block), ""]
            else:
                out += [f"![{block.caption}]({block.name})", "", f"*{block.caption}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, block in self.blocks:
            if kind == "h2":
                body.append(f"<h2>{html.escape(block)}</h2>")
            elif kind == "p":
                body.append("<p>" + CODE.sub(r"<code>\1</code>", html.escape(block)) + "</p>")
            elif kind == "table":  # scrolls sideways when wider than the page
                table = block.to_html(index=False, escape=True, na_rep="", border=0)
                body.append(f'<div class="wide">{table}</div>')
            else:
                data = base64.b64encode(block.png).decode()
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" '
                    f'alt="{html.escape(block.caption)}"><figcaption>'
                    f"{html.escape(block.caption)}</figcaption></figure>"
                )
        # Cells never wrap ("86.62 ± 0.70" reads as one number); headers may. A table wider
        # than the page scrolls inside its box instead of squeezing its columns.
        style = (
            "body{font-family:sans-serif;max-width:75em;margin:2em auto;padding:0 1em}"
            ".wide{overflow-x:auto;margin:1em 0}"
            "table{border-collapse:collapse;font-size:0.9em}"
            "td,th{border:1px solid #bbb;padding:2px 6px}td{white-space:nowrap}"
            "th{background:#f3f3f3;vertical-align:bottom;text-align:left}"
            "tr:nth-child(even) td{background:#fafafa}"
            "img{max-width:100%}"
        )
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{style}</style></head>"
            f"<body>\n{chr(10).join(body)}\n</body></html>\n"
        )


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).replace("|", "\\|")


def _markdown_table(frame: pd.DataFrame) -> str:
    lines = [
        "| " + " | ".join(map(str, frame.columns)) + " |",
        "|" + "---|" * len(frame.columns),
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def _png(fig: Figure) -> bytes:
    """`fig` as the PNG bytes a Plot holds, at one resolution for every figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()
