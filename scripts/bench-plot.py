#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Plot the ratios of scripts/bench.sh (the CSV of `fpc-bench report --csv`).

Usage: bench-plot.py RATIOS.csv OUT.png [TITLE]

One panel per part (P1..P5), each with its own linear axis so that a ratio
of 1.003 next to a target of 1.005 stays readable.  Per ratio: the median
as a dot, min-max as a bar, the target as a red tick; the dot is green when
the median meets the target, red when it does not, grey without a target.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.strip())
    src, out = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) == 4 else "fpc-bench ratios"
    try:
        with open(src, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        sys.exit(f"bench-plot: {e}")
    if not rows:
        sys.exit(f"bench-plot: {src} holds no ratio")
    parts = {}
    for r in rows:
        parts.setdefault(r["id"].split()[0], []).append(r)
    fig, axes = plt.subplots(
        len(parts), 1, squeeze=False,
        figsize=(10, sum(0.5 * len(v) + 0.9 for v in parts.values()) + 0.8),
        gridspec_kw={"height_ratios": [len(v) + 0.8 for v in parts.values()]})
    for ax, (part, prow) in zip(axes[:, 0], parts.items()):
        prow = list(reversed(prow))  # first ratio on top
        xs = []
        for y, r in enumerate(prow):
            med, lo, hi = float(r["median"]), float(r["min"]), float(r["max"])
            op, tgt = r["target_op"], r["target"]
            xs += [lo, hi]
            color = "grey"
            if tgt:
                t = float(tgt)
                xs.append(t)
                met = med <= t if op == "<=" else med >= t
                color = "tab:green" if met else "tab:red"
                ax.plot([t, t], [y - 0.35, y + 0.35], color="red", linewidth=2)
            ax.plot([lo, hi], [y, y], color=color, linewidth=5, alpha=0.4,
                    solid_capstyle="butt")
            ax.plot([med], [y], "o", color=color)
            label = f"{med:.4g} [{lo:.4g} - {hi:.4g}], n={r['runs']}"
            if tgt:
                label += f", target {op} {tgt}"
            ax.annotate(label, (hi, y), xytext=(8, -3),
                        textcoords="offset points", fontsize=8)
        lo, hi = min(xs), max(xs)
        if lo <= 1.0 <= hi or abs(hi - 1.0) < 0.05 or abs(lo - 1.0) < 0.05:
            ax.axvline(1.0, color="black", linestyle="--", linewidth=0.7)
            lo, hi = min(lo, 1.0), max(hi, 1.0)
        pad = (hi - lo) * 0.08 or max(abs(hi), 1e-3) * 0.01
        ax.set_xlim(lo - pad, hi + (hi - lo + pad) * 0.9 + pad)
        ax.set_yticks(range(len(prow)))
        ax.set_yticklabels([r["id"] for r in prow])
        ax.set_ylim(-0.6, len(prow) - 0.4)
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_title(title, fontsize=10)
    axes[-1, 0].set_xlabel(
        "ratio: median dot, min-max bar, red tick = target "
        "(green: met, red: missed, grey: no target)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    main()
