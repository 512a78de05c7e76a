#!/usr/bin/env python3
"""Checks the provisioned Grafana dashboards (compose/grafana/dashboards/*.json) without Grafana.

    check_dashboards.py [--rules OUT.yml] [--queries OUT.json] [--mainnet-only FILE] DASHBOARD.json...

For every file: valid JSON in Grafana 11's dashboard model (schemaVersion 39), a `uid` unique
across the files, panel ids and titles unique within the dashboard, every panel with a type,
a grid position, a unit and at least one query, every data source (panel, query, variable)
referenced by the provisioned uid `prometheus`, the `node` variable over
label_values(<nodescope family>, node) with multi-value and All, and no `$variable` that is
neither a variable of the dashboard nor one of Grafana's ($__rate_interval, $__interval,
$__range). The panels that may return no data on a regtest session are those whose description
says "Empty on regtest"; they and the lines of --mainnet-only (default: mainnet_only.txt beside
this script, `<dashboard uid> <panel title>` per line) must be the same.

--rules writes every query as a Prometheus recording rule (JSON, which is YAML), named
dashboard:<uid>_panel_<id>_<refId> (`-` as `_`), for `promtool check rules`: the variables are
replaced as Grafana would over a 6 h range ($node: .*, $__rate_interval: 1m, $__interval: 15s,
$__range: 6h). --queries writes the same as a JSON list (dashboard uid, panel id and title,
refId, the expression as written and as evaluated, whether the panel may be empty on regtest),
for tests that evaluate every panel against a real Prometheus.
Exits 1 with the problems listed on stderr.
"""
import argparse
import json
import os
import re
import sys

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
PANEL_TYPES = {"timeseries", "stat", "bargauge", "gauge", "heatmap", "table"}
# Grafana's own variables, as a query would see them over a 6 h range.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "6h"}
REGTEST_MARKER = "Empty on regtest"
NODE_DEFINITION = re.compile(r"label_values\((nodescope_[a-z0-9_]+), *node\)")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dashboards", nargs="+")
    parser.add_argument("--rules", help="write the queries as recording rules here")
    parser.add_argument("--queries", help="write the queries as a JSON list here")
    parser.add_argument("--mainnet-only", default=os.path.join(here, "mainnet_only.txt"))
    args = parser.parse_args()

    problems = []
    rules, queries = [], []
    uids = {}
    regtest_empty = set()
    panels_by_key = {}
    for path in args.dashboards:
        name = os.path.basename(path)

        def problem(text):
            problems.append(f"{name}: {text}")

        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            problem(f"not valid JSON: {e}")
            continue
        if not isinstance(d, dict):
            problem("not a dashboard object")
            continue
        if d.get("schemaVersion") != 39:
            problem(f"schemaVersion is {d.get('schemaVersion')!r}, not 39")
        uid = d.get("uid")
        if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
            problem(f"uid {uid!r} is not 1 to 40 letters, digits, - or _")
            uid = str(uid)
        elif uid in uids:
            problem(f"uid {uid!r} is also the uid of {uids[uid]}")
        uids.setdefault(uid, name)
        if not d.get("title"):
            problem("no title")

        def check_ds(where, ds):
            if ds != DATASOURCE:
                problem(f"{where}: datasource {ds!r} is not {DATASOURCE!r}")

        variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
        node = variables.get("node")
        if not node:
            problem("no `node` template variable")
        else:
            check_ds("variable node", node.get("datasource"))
            definition = node.get("definition", "")
            if not NODE_DEFINITION.fullmatch(definition):
                problem(f"`node` variable is not label_values(<nodescope family>, node): {definition!r}")
            query = node.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            if query != definition:
                problem(f"`node` variable's query {query!r} is not its definition {definition!r}")
            if not (node.get("multi") and node.get("includeAll")):
                problem("`node` variable is not multi-value with All")
        substitutions = dict(BUILTINS)
        substitutions.update({v: ".*" for v in variables})

        panels = d.get("panels")
        if not isinstance(panels, list) or not panels:
            problem("no panels")
            panels = []
        ids, titles = set(), set()
        for p in panels:
            pid, title = p.get("id"), p.get("title")
            where = f"panel {pid} {title!r}"
            if not isinstance(pid, int) or isinstance(pid, bool):
                problem(f"{where}: id is not an integer")
            elif pid in ids:
                problem(f"{where}: id {pid} is not unique")
            ids.add(pid)
            if not title:
                problem(f"{where}: no title")
            elif title in titles:
                problem(f"{where}: title is not unique")
            titles.add(title)
            if p.get("type") not in PANEL_TYPES:
                problem(f"{where}: type {p.get('type')!r} is not one of {sorted(PANEL_TYPES)}")
            pos = p.get("gridPos", {})
            if not all(isinstance(pos.get(k), int) for k in "xywh") or pos["x"] + pos["w"] > 24:
                problem(f"{where}: gridPos {pos!r} is not x, y, w, h within 24 columns")
            if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                problem(f"{where}: no unit (fieldConfig.defaults.unit)")
            check_ds(where, p.get("datasource"))
            description = p.get("description", "")
            if REGTEST_MARKER in description:
                regtest_empty.add((uid, title))
            panels_by_key[(uid, title)] = description
            targets = p.get("targets") or []
            if not targets:
                problem(f"{where}: no query")
            refs = set()
            for t in targets:
                ref = t.get("refId")
                if not ref or ref in refs:
                    problem(f"{where}: refId {ref!r} missing or not unique")
                refs.add(ref)
                check_ds(f"{where} query {ref}", t.get("datasource"))
                raw = t.get("expr", "")
                if not raw.strip():
                    problem(f"{where} query {ref}: empty expression")
                    continue
                unknown = []

                def substitute(m):
                    var = m.group(1) or m.group(2) or m.group(3)
                    if var not in substitutions:
                        unknown.append(m.group(0))
                        return m.group(0)
                    return substitutions[var]

                expr = VARIABLE.sub(substitute, raw)
                if unknown or "$" in expr:
                    problem(f"{where} query {ref}: unknown variable {unknown or expr!r} in {raw!r}")
                record = re.sub(r"[^A-Za-z0-9_]", "_", f"{uid}_panel_{pid}_{ref}")
                rules.append({"record": f"dashboard:{record}", "expr": expr})
                queries.append({"dashboard": uid, "file": name, "panel_id": pid, "title": title,
                                "ref_id": ref, "expr": raw, "promql": expr,
                                "empty_on_regtest": REGTEST_MARKER in description})

    records = [r["record"] for r in rules]
    for record in sorted({r for r in records if records.count(r) > 1}):
        problems.append(f"recording rule name {record} is not unique")

    listed = set()
    try:
        with open(args.mainnet_only) as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                uid, _, title = line.partition(" ")
                if (uid, title) not in panels_by_key:
                    problems.append(f"{args.mainnet_only}:{number}: no panel {title!r} in dashboard {uid}")
                listed.add((uid, title))
    except OSError as e:
        problems.append(f"{args.mainnet_only}: {e}")
    for uid, title in sorted(regtest_empty - listed):
        problems.append(f"{uid} panel {title!r} says {REGTEST_MARKER!r} but is not in {args.mainnet_only}")
    for uid, title in sorted((listed - regtest_empty) & set(panels_by_key)):
        problems.append(f"{uid} panel {title!r} is in {args.mainnet_only}, its description does not say {REGTEST_MARKER!r}")

    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    if args.rules:
        with open(args.rules, "w") as f:
            json.dump({"groups": [{"name": "dashboard-expressions", "rules": rules}]}, f, indent=1)
    if args.queries:
        with open(args.queries, "w") as f:
            json.dump(queries, f, indent=1)
    print(f"{len(args.dashboards)} dashboards ({', '.join(sorted(uids))}), {len(panels_by_key)} panels, "
          f"{len(rules)} expressions, {len(regtest_empty)} panels may be empty on regtest")


if __name__ == "__main__":
    main()
