#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Plot the ratios of scripts/bench.sh and scripts/icount-bench.sh.

Usage: bench-plot.py RATIOS.csv OUT.png [TITLE]
       bench-plot.py --icount ICOUNT.csv OUT.png [TITLE]
       bench-plot.py --http HTTP.csv OUT.png [TITLE]

RATIOS.csv (`fpc-bench report --csv`, the wall-clock ratios): one panel
per part (P1..P5), each with its own linear axis so that a ratio of 1.003
next to a target of 1.005 stays readable.  Per ratio: the value as a dot,
min-max as a bar, the noise floor (rows paired by boots) as black whiskers
of ± the noise floor around the value, the target as a red tick; the dot
is green when the target is met, red when it is not, orange when the noise
floor does not resolve it, grey without a target.

ICOUNT.csv (`fpc-bench icount-report --csv`, kernel instructions per
operation): one panel per variant (none, key-on, hsm-filled), per scenario
the ratio of the minimums with its spread as error bars and the variant's
target as a red line; dot colours as above (orange: "not resolvable").
Rows without a reference (fault-event) are listed under the plot.

HTTP.csv (`fpc-bench report --http-csv`, the HTTP source over netem link
profiles): time to `rustc --version` output per link profile (x, with the
bandwidth and round trip measured on it) for each mode (fault, fault +
prefetch, mmap, full copy; the --fill-size rows as smaller markers), each
mode's physical bound (bytes / measured bandwidth + dependent round trips x
measured round trip) as a dashed line of the same colour; log time axis.
"""
import argparse
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RATIO_COLUMNS = ("id", "pairing", "runs", "value", "min", "max",
                 "noise_floor", "target_op", "target", "met")
HTTP_COLUMNS = ("link", "rtt_ms", "rate_mbit", "measured_mbit",
                "measured_rtt_ms", "mode", "runs", "secs", "bytes",
                "requests", "events", "dep_rtts", "bound_secs")
HTTP_MODES = {"native": ("native copy (local), rustc alone", "grey"),
              "fault": ("fault mode", "tab:blue"),
              "prefetch": ("fault mode + prefetch", "tab:green"),
              "mmap": ("mmap mode", "tab:red"),
              "full": ("full copy, then run", "tab:purple"),
              "fill64k": ("fault, --fill-size 64K", "tab:cyan"),
              "fill1m": ("fault, --fill-size 1M", "tab:olive"),
              "prefetch4m": ("fault + prefetch, 4 MiB pieces", "tab:brown")}
ICOUNT_COLUMNS = ("scenario", "variant", "reference", "ref_min",
                  "patched_min", "patched_median", "ratio_min", "spread",
                  "target", "verdict", "events")

COLOURS = {"yes": "tab:green", "met": "tab:green", "NO": "tab:red",
           "MISSED": "tab:red", "not resolvable here": "tab:orange",
           "not resolvable": "tab:orange", "no noise floor": "tab:orange"}

ICOUNT_PANELS = {
    "none": "nothing watching: patched / base",
    "key-on": "static key on (FAN_PRE_FAULT mark on another filesystem): "
              "patched / base",
    "hsm-filled": "filled file on an HSM-marked filesystem: "
                  "patched / patched key-on",
}


def fail(msg):
    sys.exit(f"bench-plot: {msg}")


def read_rows(path, columns, kind):
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = reader.fieldnames or []
    except OSError as e:
        fail(str(e))
    missing = [c for c in columns if c not in fields]
    if missing:
        fail(f"{path} is not {kind} (no column {', '.join(missing)})")
    if not rows:
        fail(f"{path} holds no row")
    return rows


def number(row, col, path):
    try:
        return float(row[col])
    except ValueError:
        fail(f"{path}: {col} of {row} is not a number")


def set_xlim(ax, xs):
    lo, hi = min(xs), max(xs)
    if lo <= 1.0 <= hi or abs(hi - 1.0) < 0.05 or abs(lo - 1.0) < 0.05:
        ax.axvline(1.0, color="black", linestyle="--", linewidth=0.7)
        lo, hi = min(lo, 1.0), max(hi, 1.0)
    pad = (hi - lo) * 0.08 or max(abs(hi), 1e-3) * 0.01
    # Room on the right for the labels.
    ax.set_xlim(lo - pad, hi + (hi - lo + pad) * 0.9 + pad)


def panels(groups, row_height=0.5):
    fig, axes = plt.subplots(
        len(groups), 1, squeeze=False,
        figsize=(11, sum(row_height * len(v) + 0.9 for v in groups) + 0.9),
        gridspec_kw={"height_ratios": [len(v) + 0.8 for v in groups]})
    return fig, axes[:, 0]


def plot_ratios(src, title):
    rows = read_rows(src, RATIO_COLUMNS, "a ratio CSV (fpc-bench report --csv)")
    parts = {}
    for r in rows:
        parts.setdefault(r["id"].split()[0], []).append(r)
    fig, axes = panels(list(parts.values()))
    for ax, prow in zip(axes, parts.values()):
        prow = list(reversed(prow))  # first ratio on top
        xs = []
        for y, r in enumerate(prow):
            val, lo, hi = (number(r, c, src) for c in ("value", "min", "max"))
            op, tgt, met = r["target_op"], r["target"], r["met"]
            xs += [lo, hi]
            colour = COLOURS.get(met, "grey") if tgt else "grey"
            if tgt:
                t = number(r, "target", src)
                xs.append(t)
                ax.plot([t, t], [y - 0.35, y + 0.35], color="red", linewidth=2)
            ax.plot([lo, hi], [y, y], color=colour, linewidth=5, alpha=0.4,
                    solid_capstyle="butt")
            label = f"{val:.4g} [{lo:.4g} - {hi:.4g}], n={r['runs']}"
            if r["noise_floor"]:
                noise = number(r, "noise_floor", src)
                ax.errorbar([val], [y], xerr=[noise], fmt="none",
                            ecolor="black", elinewidth=1, capsize=4)
                xs += [val - noise, val + noise]
                label += f", noise floor {noise * 100:.2f}%"
            ax.plot([val], [y], "o", color=colour)
            if tgt:
                label += f", target {op} {tgt}: {met}"
            ax.annotate(label, (max(hi, val), y), xytext=(8, -3),
                        textcoords="offset points", fontsize=8)
        set_xlim(ax, xs)
        ax.set_yticks(range(len(prow)))
        ax.set_yticklabels([f"{r['id']} ({r['pairing']})" for r in prow])
        ax.set_ylim(-0.6, len(prow) - 0.4)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_title(title, fontsize=10)
    axes[-1].set_xlabel(
        "ratio: dot = value, bar = min-max, black whiskers = ± noise floor "
        "(two base boots), red tick = target\n(green: met, red: missed, "
        "orange: not resolvable here / no noise floor, grey: no target); "
        "(runs): paired by run, (boots): patched vs mean of the base boots",
        fontsize=9)
    return fig


def plot_icount(src, title):
    rows = read_rows(src, ICOUNT_COLUMNS,
                     "an instruction-count CSV (fpc-bench icount-report --csv)")
    variants, absolute = {}, []
    for r in rows:
        if r["ratio_min"]:
            variants.setdefault(r["variant"], []).append(r)
        else:
            absolute.append(r)
    if not variants:
        fail(f"{src} holds no ratio")
    fig, axes = panels(list(variants.values()), row_height=0.42)
    for ax, (variant, vrows) in zip(axes, variants.items()):
        vrows = list(reversed(vrows))  # first scenario on top
        xs = []
        targets = sorted({r["target"] for r in vrows if r["target"]})
        for t in targets:
            xs.append(float(t))
            ax.axvline(float(t), color="red", linewidth=1.5)
        for y, r in enumerate(vrows):
            val = number(r, "ratio_min", src)
            spread = number(r, "spread", src) if r["spread"] else 0.0
            colour = COLOURS.get(r["verdict"], "grey")
            ax.errorbar([val], [y], xerr=[spread], fmt="o", color=colour,
                        ecolor="black", elinewidth=1, capsize=4)
            xs += [val - spread, val + spread]
            label = (f"{val:.4f} ± {spread:.4f} "
                     f"({r['patched_min']} / {r['ref_min']})")
            if r["target"]:
                label += f": {r['verdict']}"
            ax.annotate(label, (val + spread, y), xytext=(8, -3),
                        textcoords="offset points", fontsize=8)
        set_xlim(ax, xs)
        ax.set_yticks(range(len(vrows)))
        ax.set_yticklabels([r["scenario"] for r in vrows])
        ax.set_ylim(-0.6, len(vrows) - 0.4)
        ax.grid(axis="x", alpha=0.3)
        head = ICOUNT_PANELS.get(variant, f"{variant}: patched / reference")
        if targets:
            head += ", target <= " + ", ".join(targets)
        ax.set_title(head, fontsize=9, loc="left")
    fig.suptitle(title, fontsize=10)
    xlabel = ("kernel instructions per operation, ratio of the minimums over "
              "the windows: dot = ratio, whiskers = ± spread (halves, second "
              "boots), red line = target\n(green: met, red: missed, orange: "
              "not resolvable, grey: no target); in brackets: patched min / "
              "reference min")
    for r in absolute:
        events = f", {r['events']} events" if r["events"] else ""
        xlabel += (f"\n{r['scenario']} ({r['variant']}{events}): "
                   f"{r['patched_min']} kernel instructions (min), median "
                   f"{r['patched_median']}; absolute, no reference")
    axes[-1].set_xlabel(xlabel, fontsize=9)
    return fig


def plot_http(src, title):
    rows = read_rows(src, HTTP_COLUMNS,
                     "an HTTP CSV (fpc-bench report --http-csv)")
    links = []
    for r in rows:
        if r["link"] not in [k["link"] for k in links]:
            links.append(r)
    links.sort(key=lambda r: number(r, "rtt_ms", src))
    xs = {r["link"]: i for i, r in enumerate(links)}
    fig, ax = plt.subplots(figsize=(10, 6))
    for mode, (label, colour) in HTTP_MODES.items():
        mrows = sorted((r for r in rows if r["mode"] == mode),
                       key=lambda r: xs[r["link"]])
        if not mrows:
            continue
        x = [xs[r["link"]] for r in mrows]
        t = [number(r, "secs", src) for r in mrows]
        b = [number(r, "bound_secs", src) for r in mrows]
        small = mode.startswith("fill") or mode == "prefetch4m"
        ax.plot(x, t, "o" if small else "o-", color=colour,
                markersize=5 if small else 8, label=f"{label}: measured")
        if any(v > 0 for v in b):
            ax.plot(x, b, marker="_", linestyle="none" if small else "--",
                    color=colour, alpha=0.7, markersize=16,
                    label=f"{label}: bound")
        for xi, ti, r in zip(x, t, mrows):
            if mode == "native":
                continue
            ax.annotate(f"{ti:.2f} s, {number(r, 'bytes', src) / 1e6:.0f} MB",
                        (xi, ti), xytext=(6, 2), textcoords="offset points",
                        fontsize=7, color=colour)
    ax.set_yscale("log")
    ax.set_xticks(range(len(links)))
    ax.set_xticklabels(
        [f"{float(r['rtt_ms']):.0f} ms / {float(r['rate_mbit']):.0f} Mbit/s\n"
         f"(measured {float(r['measured_mbit']):.0f} Mbit/s, "
         f"{float(r['measured_rtt_ms']):.1f} ms)" for r in links])
    ax.set_xlim(-0.3, len(links) - 0.3)
    ax.set_ylabel("time to rustc --version output (s, log)")
    ax.set_xlabel("link profile (netem on lo: RTT / rate)\nbound = bytes / "
                  "measured bandwidth + dependent round trips x measured "
                  "round trip")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=10)
    return fig


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring of scripts/bench-plot.py.")
    kind = ap.add_mutually_exclusive_group()
    kind.add_argument("--icount", action="store_true",
                      help="CSV is fpc-bench icount-report --csv")
    kind.add_argument("--http", action="store_true",
                      help="CSV is fpc-bench report --http-csv")
    ap.add_argument("csv", help="the CSV to plot")
    ap.add_argument("png", help="the PNG to write")
    ap.add_argument("title", nargs="?", help="the plot's title")
    a = ap.parse_args()
    if a.icount:
        fig = plot_icount(a.csv, a.title or "fpc-bench instruction counts")
    elif a.http:
        fig = plot_http(a.csv, a.title or "fpc-bench: HTTP source")
    else:
        fig = plot_ratios(a.csv, a.title or "fpc-bench ratios")
    fig.tight_layout()
    try:
        fig.savefig(a.png, dpi=120)
    except OSError as e:
        fail(str(e))
    print(a.png)


if __name__ == "__main__":
    main()
