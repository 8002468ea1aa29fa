"""The markdown table of a bench run: one section per case, one row per method, with the median,
min and max of its samples and the ratio of its median to the first method's (runner's).

Input: the tab-separated rows of bench/lib.sh's `record` (case, method, value, note). Values are
milliseconds, or megabytes when the method's label says `(MB)`. A case whose title says `: the
parts` shows no ratios.
Usage: python3 bench/table.py RESULTS.tsv
"""

import statistics
import sys


def amount(value, mb):
    if mb:
        return f"{value:.1f} MB"
    if value < 1:
        return f"{value * 1000:.0f} µs"
    if value < 1000:
        return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"
    return f"{value / 1000:.2f} s"


def main(path):
    cases = {}
    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        case, method, value, *note = line.rstrip("\n").split("\t")
        methods = cases.setdefault(case, {})
        entry = methods.setdefault(method, {"values": [], "notes": []})
        entry["values"].append(float(value))
        if note and note[0] and note[0] not in entry["notes"]:
            entry["notes"].append(note[0])
    for case, methods in cases.items():
        print(f"\n### {case}\n")
        print("| method | median | min | max | runs | ÷ runner | notes |")
        print("|---|---:|---:|---:|---:|---:|---|")
        base = None
        for method, entry in methods.items():
            values = entry["values"]
            mb = "(MB)" in method
            median = statistics.median(values)
            if base is None:
                base = median
            # A case of parts (": the parts" in its title) has no ratios: its rows add up instead.
            ratio = f"{median / base:.2f}x" if base and ": the parts" not in case else "-"
            cells = [
                method.replace("|", "\\|"),
                amount(median, mb),
                amount(min(values), mb),
                amount(max(values), mb),
                str(len(values)),
                ratio,
                "; ".join(entry["notes"]).replace("|", "\\|"),
            ]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
