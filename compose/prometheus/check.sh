#!/usr/bin/env bash
# Checks the Prometheus and Grafana configuration of the compose stack, without a server:
#   - promtool check config prometheus.yml (rule_files pointed at the local alerts.yml)
#   - promtool check rules alerts.yml, promtool test rules alerts_test.yml
#   - the Grafana dashboard is valid JSON, and every PromQL expression in it parses (as a
#     recording rule for promtool check rules)
#   - every nodescope_* name used in the alerts, their tests and the dashboard is a family
#     README.md documents (histogram series: the family plus _bucket, _sum or _count)
#   - the Grafana provisioning files say what the stack expects
# Needs promtool (Debian: prometheus) and python3. Exits non-zero on any problem.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
compose="$(dirname "$here")"
repo="$(dirname "$compose")"
dashboard="$compose/grafana/dashboards/nodescope.json"
readme="$repo/README.md"

command -v promtool >/dev/null || { echo "check.sh: promtool not found (Debian: apt-get install prometheus)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "check.sh: python3 not found" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "promtool check config prometheus.yml (rule_files -> local alerts.yml)"
cp "$here/prometheus.yml" "$here/alerts.yml" "$tmp/"
grep -q '^  - /etc/prometheus/alerts.yml$' "$tmp/prometheus.yml" \
    || { echo "prometheus.yml does not load /etc/prometheus/alerts.yml" >&2; exit 1; }
sed -i "s#/etc/prometheus/alerts.yml#$tmp/alerts.yml#" "$tmp/prometheus.yml"
promtool check config "$tmp/prometheus.yml"

step "promtool check rules alerts.yml"
promtool check rules "$here/alerts.yml"

step "promtool test rules alerts_test.yml"
cp "$here/alerts_test.yml" "$tmp/"
(cd "$tmp" && promtool test rules alerts_test.yml)

step "dashboard: JSON, structure, PromQL expressions as recording rules"
python3 -m json.tool "$dashboard" >/dev/null
python3 - "$dashboard" "$tmp/dashboard_rules.yml" <<'EOF'
import json, re, sys

path, out = sys.argv[1], sys.argv[2]
d = json.load(open(path))
problems = []
if d.get("schemaVersion") != 39:
    problems.append(f"schemaVersion is {d.get('schemaVersion')}, not 39")
variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
node = variables.get("node")
if not node:
    problems.append("no `node` template variable")
elif not re.fullmatch(r"label_values\(nodescope_[a-z0-9_]+, *node\)", node.get("definition", "")):
    problems.append(f"`node` variable is not label_values(<family>, node): {node.get('definition')!r}")

def check_ds(where, ds):
    if ds != {"type": "prometheus", "uid": "prometheus"}:
        problems.append(f"{where}: datasource {ds!r} is not the provisioned uid `prometheus`")

if node:
    check_ds("variable node", node.get("datasource"))
ids = [p.get("id") for p in d["panels"]]
if len(ids) != len(set(ids)):
    problems.append(f"panel ids are not unique: {ids}")

# Grafana's variables, as a query would see them over a 6 h range.
subst = {"$node": ".*", "$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h"}
rules = []
for p in d["panels"]:
    check_ds(f"panel {p['title']!r}", p.get("datasource"))
    if not p.get("targets"):
        problems.append(f"panel {p['title']!r} has no query")
    for t in p.get("targets", []):
        check_ds(f"panel {p['title']!r} query {t['refId']}", t.get("datasource"))
        expr = t["expr"]
        for k in sorted(subst, key=len, reverse=True):
            expr = expr.replace(k, subst[k])
        if "$" in expr:
            problems.append(f"panel {p['title']!r}: unknown variable in {t['expr']!r}")
        rules.append({"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": expr})
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
# JSON is YAML.
json.dump({"groups": [{"name": "dashboard-expressions", "rules": rules}]}, open(out, "w"), indent=1)
print(f"{len(d['panels'])} panels, {len(rules)} expressions, variable node = {node['definition']}")
EOF
promtool check rules "$tmp/dashboard_rules.yml"

step "every nodescope_* name used is a family README.md documents"
python3 - "$readme" "$here/alerts.yml" "$here/alerts_test.yml" "$dashboard" <<'EOF'
import re, sys

readme = open(sys.argv[1]).read()
documented = set(re.findall(r"`(nodescope_[a-z0-9_]+)`", readme))
used = {}
for path in sys.argv[2:]:
    for name in re.findall(r"\bnodescope_[a-z0-9_]+", open(path).read()):
        used.setdefault(name, set()).add(path.rsplit("/", 1)[-1])
unknown = []
for name in sorted(used):
    family = name
    if family not in documented:
        family = re.sub(r"_(bucket|sum|count)$", "", name)
    if family not in documented:
        unknown.append(f"{name} (in {', '.join(sorted(used[name]))})")
if unknown:
    print("not documented in README.md:\n  " + "\n  ".join(unknown), file=sys.stderr)
    sys.exit(1)
print(f"{len(used)} names, all documented: " + " ".join(sorted(used)))
EOF

step "Grafana provisioning"
python3 - "$compose/grafana/provisioning" <<'EOF'
import sys
try:
    import yaml
except ImportError:
    print("python3-yaml not installed: provisioning files not parsed (skipped)")
    sys.exit(0)
base = sys.argv[1]
ds = yaml.safe_load(open(f"{base}/datasources/prometheus.yml"))
[prom] = [d for d in ds["datasources"] if d["type"] == "prometheus"]
assert prom["uid"] == "prometheus", prom
assert prom["url"] == "http://prometheus:9090", prom
dash = yaml.safe_load(open(f"{base}/dashboards/nodescope.yml"))
[provider] = dash["providers"]
assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards", provider
print(f"datasource {prom['name']} (uid {prom['uid']}) at {prom['url']}; dashboards from {provider['options']['path']}")
EOF

printf '\nall checks passed\n'
