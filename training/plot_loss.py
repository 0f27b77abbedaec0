"""Draw the training log (train-log.json) as an SVG: the loss every 25 steps (and its running mean),
and the probes' accuracies (facts right of 20, antonyms with five and zero demonstrations, copying
with five: the model does not tell copying from antonyms, see corpus.TASK_WEIGHTS).

    python -m training.plot_loss training/tiny-facts/train-log.json docs/tiny-facts-training.svg
"""
from __future__ import annotations

import json
import math
import sys
from typing import List, Sequence, Tuple

W, H = 760, 300
L, R, T, B = 60, 20, 36, 42  # margins
GAP = 60
PANEL = (W - L - R - GAP) // 2


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _line(points: Sequence[Tuple[float, float]], color: str, width: float = 1.5, dash: str = "") -> str:
    d = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline fill="none" stroke="{color}" stroke-width="{width}"{extra} points="{d}"/>'


def _axes(x0: int, title: str, xmax: int, ymin: float, ymax: float, yticks: List[float], fmt) -> List[str]:
    out = [f'<rect x="{x0}" y="{T}" width="{PANEL}" height="{H - T - B}" fill="none" stroke="#999"/>',
           f'<text x="{x0 + PANEL / 2}" y="{T - 12}" text-anchor="middle" font-weight="bold">{_esc(title)}</text>',
           f'<text x="{x0 + PANEL / 2}" y="{H - 8}" text-anchor="middle" fill="#555">step</text>']
    for v in yticks:
        y = T + (H - T - B) * (1 - (v - ymin) / (ymax - ymin))
        out.append(f'<line x1="{x0}" x2="{x0 + PANEL}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{fmt(v)}</text>')
    step = 10 ** math.floor(math.log10(max(1, xmax)))
    if xmax / step < 4:
        step //= 2
    for s in range(0, xmax + 1, max(1, step)):
        x = x0 + PANEL * s / xmax
        out.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle" fill="#555">{s}</text>')
    return out


def render(log: dict) -> str:
    steps, loss = log["steps"], log["loss"]
    xmax = max(steps[-1], 1)
    lmax = math.ceil(max(loss[: max(1, len(loss))]))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
             f'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>']
    # loss, log scale
    lo, hi = math.log(0.3), math.log(max(lmax, 1.0))
    ticks = [v for v in (0.3, 0.5, 1, 2, 4, 8) if 0.3 <= v <= max(lmax, 1.0)]
    parts += _axes(L, "training loss (nats/token)", xmax, lo, hi, [math.log(v) for v in ticks],
                   lambda v: f"{math.exp(v):g}")

    def lxy(s, v):
        v = min(max(v, 0.3), math.exp(hi))
        return L + PANEL * s / xmax, T + (H - T - B) * (1 - (math.log(v) - lo) / (hi - lo))
    parts.append(_line([lxy(s, v) for s, v in zip(steps, loss)], "#9ecae1", 1))
    # the mean of the last four logged losses (100 steps), so it lags by about 50 steps
    mean = [sum(loss[max(0, i - 3):i + 1]) / len(loss[max(0, i - 3):i + 1]) for i in range(len(loss))]
    parts.append(_line([lxy(s, v) for s, v in zip(steps, mean)], "#08519c", 2))
    # probes
    x1 = L + PANEL + GAP
    parts += _axes(x1, "probes (accuracy, top-1)", xmax, 0, 1, [0, 0.25, 0.5, 0.75, 1], lambda v: f"{v:g}")
    probes = log["probes"]
    series = [("facts", "facts (of 20)", "#31a354", lambda p: p["facts"] / 20),
              ("antonym5", "antonyms, 5-shot", "#d62728", lambda p: p["antonym5"]),
              ("antonym0", "antonyms, 0-shot", "#ff9896", lambda p: p["antonym0"]),
              ("copy5", "copy, 5-shot", "#9467bd", lambda p: p["copy5"])]
    for i, (_, label, color, get) in enumerate(series):
        pts = [(x1 + PANEL * p["step"] / xmax, T + (H - T - B) * (1 - get(p))) for p in probes]
        parts.append(_line(pts, color, 2, "4 3" if "0-shot" in label else ""))
        ly = T + (H - T - B) * 0.3 + 16 * i
        parts.append(f'<line x1="{x1 + PANEL - 150}" x2="{x1 + PANEL - 130}" y1="{ly - 4}" y2="{ly - 4}" '
                     f'stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{x1 + PANEL - 125}" y="{ly}" fill="#333">{_esc(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m training.plot_loss LOG.json OUT.svg", file=sys.stderr)
        return 2
    with open(argv[0], "r", encoding="utf-8") as f:
        log = json.load(f)
    with open(argv[1], "w", encoding="utf-8") as f:
        f.write(render(log))
    print(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
