"""An attention-head explorer for a static page: HTML, an inline script, no server.

Three ``<select>`` lists (``head-explorer-sentence``, ``-layer``, ``-head``) pick a map that
the script redraws in ``head-explorer-map``, whose ``data-state`` reads
``"sentence/layer/head"``. Weights are rounded to two decimals, so the bytes are stable."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence

import matplotlib
import torch
from torch import Tensor

from attention_book import plots, validation

#: The ids of the explorer's elements.
IDS = (
    "head-explorer",
    "head-explorer-sentence",
    "head-explorer-layer",
    "head-explorer-head",
    "head-explorer-map",
    "head-explorer-caption",
)

_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById("head-explorer-data").textContent);
  var pick = function (name) { return document.getElementById("head-explorer-" + name); };
  var svgNS = "http://www.w3.org/2000/svg";
  function draw() {
    var s = +pick("sentence").value, l = +pick("layer").value, h = +pick("head").value;
    var item = data.sentences[s], tokens = item.tokens, T = tokens.length;
    var rows = item.weights[l][h], cell = 22, margin = 70;
    var svg = pick("map"), size = margin + T * cell + 4;
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    svg.setAttribute("width", size); svg.setAttribute("height", size);
    svg.setAttribute("viewBox", "0 0 " + size + " " + size);
    svg.setAttribute("data-state", s + "/" + l + "/" + h);
    function text(x, y, str, anchor, rotate) {
      var t = document.createElementNS(svgNS, "text");
      t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "11");
      t.setAttribute("text-anchor", anchor);
      if (rotate) { t.setAttribute("transform", "rotate(-60 " + x + " " + y + ")"); }
      t.textContent = str; svg.appendChild(t);
    }
    for (var q = 0; q < T; q++) {
      text(margin - 4, margin + q * cell + 15, tokens[q], "end", false);
      text(margin + q * cell + 11, margin - 4, tokens[q], "start", true);
      for (var k = 0; k < T; k++) {
        var w = rows[q][k], r = document.createElementNS(svgNS, "rect");
        r.setAttribute("x", margin + k * cell); r.setAttribute("y", margin + q * cell);
        r.setAttribute("width", cell - 1); r.setAttribute("height", cell - 1);
        r.setAttribute("fill", data.colors[w]);
        var tip = document.createElementNS(svgNS, "title");
        tip.textContent = tokens[q] + " \\u2192 " + tokens[k] + ": " + (w / 100).toFixed(2);
        r.appendChild(tip); svg.appendChild(r);
      }
    }
    pick("caption").textContent = "L" + l + "H" + h + " (layer " + l + ", head " + h +
      ", counted from 0): row = the token that attends, column = the token attended to " +
      "(darker = more weight).";
  }
  ["sentence", "layer", "head"].forEach(function (name) {
    pick(name).addEventListener("change", draw);
  });
  draw();
})();
"""


def _options(labels: Sequence[str], selected: int) -> str:
    return "".join(
        f'<option value="{i}"{" selected" if i == selected else ""}>{html.escape(label)}</option>'
        for i, label in enumerate(labels)
    )


def head_explorer_html(
    sentences: Mapping[str, tuple[Sequence[str], Tensor]],
    layer: int = 0,
    head: int = 0,
) -> str:
    """The HTML fragment for ``sentences``: label -> ``(tokens, weights (N, H, T, T))``.

    ``layer`` and ``head`` (from 0) pick the map shown first."""
    if not sentences:
        raise ValueError("sentences must hold at least one sentence")
    layer = validation.check_non_negative_int("layer", layer)  # not 1.0, not True
    head = validation.check_non_negative_int("head", head)
    shapes = set()
    for label, (tokens, weights) in sentences.items():
        T = len(tokens)
        if not isinstance(weights, Tensor) or weights.dim() != 4 or weights.shape[2:] != (T, T):
            got = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
            raise ValueError(f"{label!r}: weights must be (N, H, T={T}, T={T}), got {got}")
        validation.check_float_tensor(f"{label!r}: weights", weights)
        rows = weights.sum(-1)  # (N, H, T): 1 for softmax rows, 0 for a row that reads nothing
        ok = torch.isclose(rows, torch.ones_like(rows), atol=1e-3) | (rows == 0)
        if not (torch.isfinite(weights).all() and (weights >= 0).all() and ok.all()):
            raise ValueError(
                f"{label!r}: weights must be attention weights (finite, at least 0, rows "
                f"summing to 1), not raw scores or NaN"
            )
        shapes.add(tuple(weights.shape[:2]))
    if len(shapes) != 1:
        raise ValueError(f"every sentence needs the same (layers, heads), got {sorted(shapes)}")
    ((N, H),) = shapes
    if not (0 <= layer < N and 0 <= head < H):
        raise ValueError(f"layer={layer}, head={head} outside (layers, heads) = {(N, H)}")
    cmap = matplotlib.colormaps[plots.ATTENTION_CMAP]
    payload = {
        # 101 colours, for weights 0.00 to 1.00 in steps of 0.01.
        "colors": [matplotlib.colors.to_hex(cmap(i / 100)) for i in range(101)],
        "sentences": [
            {
                "tokens": list(tokens),
                # (N, H, T, T) weights -> integers in [0, 100]: hundredths.
                "weights": torch.round(weights.float() * 100).clamp(0, 100).int().tolist(),
            }
            for tokens, weights in sentences.values()
        ],
    }
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    controls = "".join(
        f'<span class="head-explorer-control"><label for="head-explorer-{name}">{title}</label>'
        f'<select id="head-explorer-{name}">{options}</select></span>'
        for name, title, options in (
            ("sentence", "Sentence", _options(list(sentences), 0)),
            ("layer", "Layer", _options([str(i) for i in range(N)], layer)),
            ("head", "Head", _options([str(i) for i in range(H)], head)),
        )
    )
    return (
        # The book's stylesheet (_static/book.css) styles these classes and ids; the fragment
        # also works without it, in Jupyter or Colab.
        '<div id="head-explorer" role="group" aria-label="Attention-head explorer">'
        f'<div class="head-explorer-controls">{controls}</div>'
        '<div><svg id="head-explorer-map" role="img" aria-label="Attention map of the chosen '
        'layer and head" xmlns="http://www.w3.org/2000/svg"></svg></div>'
        '<p id="head-explorer-caption" aria-live="polite"></p>'
        f'<script type="application/json" id="head-explorer-data">{data}</script>'
        f"<script>{_SCRIPT}</script>"
        "</div>"
    )
