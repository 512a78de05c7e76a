#!/usr/bin/env bash
# Checks the Prometheus and Grafana configuration of the compose stack, without a server:
#   - promtool check config prometheus.yml (rule_files pointed at the local alerts.yml)
#   - promtool check rules alerts.yml, promtool test rules alerts_test.yml; every alert has
#     the annotations summary, description and runbook, the labels severity and exporter, and
#     in alerts_test.yml a case where it fires and one where it stays quiet, and a row in
#     README.md's table of alerts
#   - amtool check-config ../alertmanager/alertmanager.yml
#   - every Grafana dashboard (compose/grafana/dashboards/*.json) is valid for Grafana's model,
#     and every PromQL expression in them parses (as a recording rule for promtool check rules):
#     compose/grafana/check_dashboards.py
#   - every nodescope_* name used in the alerts, their tests and the dashboards is a family
#     README.md documents (histogram series: the family plus _bucket, _sum or _count)
#   - the Grafana provisioning files say what the stack expects
# Needs promtool (Debian: prometheus), amtool (Debian: prometheus-alertmanager) and python3.
# Exits non-zero on any problem.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
compose="$(dirname "$here")"
repo="$(dirname "$compose")"
dashboards=("$compose"/grafana/dashboards/*.json)
readme="$repo/README.md"

command -v promtool >/dev/null || { echo "check.sh: promtool not found (Debian: apt-get install prometheus)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "check.sh: python3 not found" >&2; exit 1; }
command -v amtool >/dev/null || { echo "check.sh: amtool not found (Debian: apt-get install prometheus-alertmanager)" >&2; exit 1; }

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

step "every alert: summary, description, runbook, severity, exporter; a firing and a quiet test; in README"
python3 - "$here/alerts.yml" "$here/alerts_test.yml" "$readme" <<'EOF'
import sys
import yaml
readme = open(sys.argv[3]).read()
rules = [r for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"] if "alert" in r]
cases = [c for t in yaml.safe_load(open(sys.argv[2]))["tests"] for c in t.get("alert_rule_test", [])]
problems = []
for r in rules:
    name = r["alert"]
    for key in ("summary", "description", "runbook"):
        if not r.get("annotations", {}).get(key, "").strip():
            problems.append(f"{name}: no annotation {key}")
    for key in ("severity", "exporter"):
        if key not in r.get("labels", {}):
            problems.append(f"{name}: no label {key}")
    if f"| `{name}` |" not in readme:
        problems.append(f"{name}: not in README.md's table of alerts")
    own = [c for c in cases if c["alertname"] == name]
    if not any(c.get("exp_alerts") for c in own):
        problems.append(f"{name}: no test case where it fires")
    if not any(not c.get("exp_alerts") for c in own):
        problems.append(f"{name}: no test case where it stays quiet")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"{len(rules)} alerts, {len(cases)} test cases")
EOF

step "amtool check-config alertmanager.yml"
amtool check-config "$compose/alertmanager/alertmanager.yml"

step "dashboards: JSON, structure, PromQL expressions as recording rules (compose/grafana/check_dashboards.py)"
python3 "$compose/grafana/check_dashboards.py" --rules "$tmp/dashboard_rules.yml" "${dashboards[@]}"
promtool check rules "$tmp/dashboard_rules.yml"

step "every nodescope_* name used is a family README.md documents"
python3 - "$readme" "$here/alerts.yml" "$here/alerts_test.yml" "${dashboards[@]}" <<'EOF'
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
