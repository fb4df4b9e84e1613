#!/usr/bin/env python3
"""Prints the metric names the PromQL expressions of the Grafana dashboard
and the Prometheus rules use, one per line, and (with --promql FILE) writes
every expression into a rules file for `promtool check rules` to parse.

Usage: metric-names.py DASHBOARD.json RULES.yml [--promql OUT.yml]
"""
import json
import re
import sys

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right",
            "and", "or", "unless", "bool", "offset", "inf", "nan"}
# Grafana's variables, given values Prometheus accepts.
GRAFANA = {"$__rate_interval": "5m", "$__interval": "1m", "$job": ".*", "$instance": ".*"}


def dashboard_exprs(path):
    """Every target expression of every panel (rows' nested panels too)."""
    out = []

    def walk(panels):
        for p in panels:
            out.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))
    walk(json.load(open(path))["panels"])
    return out


def rule_exprs(path):
    """`expr:` values of a rules file, including `|` block scalars (no YAML module needed)."""
    out, lines, i = [], open(path).read().splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        if m.group(2).strip() in ("|", ">", "|-", ">-"):
            body = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(m.group(1))):
                body.append(lines[i].strip())
                i += 1
            out.append(" ".join(body))
        else:
            out.append(m.group(2))
    return out


def names(expr):
    """Metric names in a PromQL expression: identifiers that are not functions,
    keywords, label names, label values or durations."""
    e = re.sub(r'"(\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    found = set()
    for m in re.finditer(r"(?<![\w$.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", e):
        if m.group(1) not in KEYWORDS:
            found.add(m.group(1))
    return found


def main():
    dash, rules = sys.argv[1], sys.argv[2]
    exprs = dashboard_exprs(dash) + rule_exprs(rules)
    if "--promql" in sys.argv:
        with open(sys.argv[sys.argv.index("--promql") + 1], "w") as f:
            f.write("groups:\n  - name: dashboard\n    rules:\n")
            for n, e in enumerate(dashboard_exprs(dash)):
                for k, v in GRAFANA.items():
                    e = e.replace(k, v)
                f.write(f"      - record: dashboard:expr{n}\n        expr: {json.dumps(e)}\n")
    for n in sorted(set().union(*map(names, exprs))):
        print(n)


if __name__ == "__main__":
    main()
