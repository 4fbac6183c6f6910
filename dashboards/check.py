#!/usr/bin/env python3
"""Checks of Millrace's dashboards, alert rules, compose file and KEDA example.

    check.py static              metric names, docs, dashboard shape, compose.yaml, deploy/
    check.py live PROMETHEUS_URL every dashboard and alert query against a live Prometheus

`static` fails when a dashboard, an alert rule or the KEDA example uses a
metric name the worker does not define (worker/src/metrics.rs), when a
defined metric is missing from the README, or when compose.yaml does not
parse or names a file that does not exist. `live` runs every PromQL
expression of every dashboard panel through Prometheus's HTTP API and fails
when one is invalid or returns no series; for alert rules (which return
nothing while they do not fire) it checks that Prometheus loaded them
healthy, that each expression evaluates, and that every series selector in
it returns series. Run by dashboards/check.sh, which starts the Prometheus.
"""

import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "dashboards" / "grafana" / "dashboards").glob("*.json"))
ALERTS = ROOT / "dashboards" / "prometheus" / "alerts.yml"
METRICS_RS = ROOT / "worker" / "src" / "metrics.rs"
# The outbox relay's metrics (millrace-postgres), exported by the worker too.
OUTBOX_METRICS_RS = ROOT / "postgres" / "src" / "metrics.rs"
README = ROOT / "README.md"
COMPOSE = ROOT / "compose.yaml"
DEPLOY = sorted((ROOT / "deploy").glob("*.yaml"))

# Series that Prometheus itself makes, which dashboards may use.
BUILTIN = {"up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's variables, replaced as a panel would be over the last hour.
GRAFANA_VARS = {
    "$__rate_interval": "30s",
    "$__interval": "5s",
    "$__range": "1h",
    "${queue}": ".*",
    "$queue": ".*",
}
SELECTOR = re.compile(r"\b(up|millrace_[a-z0-9_]+)\b(\{[^}]*\})?")

failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


def defined_metrics():
    text = METRICS_RS.read_text() + OUTBOX_METRICS_RS.read_text()
    names = set(re.findall(r'pub const [A-Z_]+: &str = "(millrace_[a-z0-9_]+)";', text))
    if len(names) < 10:
        sys.exit(f"found only {len(names)} metric names in {METRICS_RS}: has its format changed?")
    return names


def base_name(name, defined):
    if name in defined or name in BUILTIN:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in defined:
            return name[: -len(suffix)]
    return None


def unknown_metrics(exprs, defined):
    """Metric names used in `exprs` that the worker does not define."""
    out = set()
    for expr in exprs:
        for name, _ in SELECTOR.findall(expr):
            if base_name(name, defined) is None:
                out.add(name)
    return out


def substitute(expr):
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def panels(dashboard):
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])  # collapsed rows hold their panels


def dashboard_queries():
    """(where, expr) of every panel target, Grafana variables substituted."""
    out = []
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        for p in panels(d):
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"{path.name}: {p['title']} [{t['refId']}]", substitute(t["expr"])))
    return out


def dashboard_variable_queries():
    out = []
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        for v in d.get("templating", {}).get("list", []):
            q = v.get("query")
            if isinstance(q, dict):
                q = q.get("query")
            if v.get("type") == "query" and q:
                out.append((f"{path.name}: variable {v['name']}", q))
    return out


def deploy_queries():
    """(where, expr) of the PromQL queries of deploy/ (the KEDA trigger)."""
    import yaml

    out = []
    for path in DEPLOY:
        for doc in yaml.safe_load_all(path.read_text()):
            for trigger in (doc or {}).get("spec", {}).get("triggers", []):
                q = trigger.get("metadata", {}).get("query")
                if q:
                    out.append((f"{path.name}: {trigger['type']} trigger", q))
    return out


def alert_exprs_static():
    import yaml

    rules = yaml.safe_load(ALERTS.read_text())
    return [
        (f"alerts.yml: {r.get('alert') or r.get('record')}", r["expr"])
        for g in rules["groups"]
        for r in g["rules"]
    ]


def check_dashboard_shape():
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        if not d.get("uid") or not d.get("title"):
            fail(f"{path.name}: no uid or title")
        ids = [p["id"] for p in panels(d)]
        if len(ids) != len(set(ids)):
            fail(f"{path.name}: duplicate panel ids")
        for p in panels(d):
            if p["type"] != "row" and not p.get("targets"):
                fail(f"{path.name}: panel {p['title']!r} has no query")
            for t in p.get("targets", []):
                if "$" in substitute(t.get("expr", "")):
                    fail(f"{path.name}: panel {p['title']!r} uses an unknown variable: {t['expr']}")


def check_compose():
    import yaml

    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose.get("services", {})
    for want in ("redis", "postgres", "prometheus", "grafana", "worker", "producer"):
        if want not in services:
            fail(f"compose.yaml: no service {want!r}")
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            ctx = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = ctx / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            if not ctx.is_dir():
                fail(f"compose.yaml: service {name}: build context {ctx} missing")
            if not dockerfile.is_file():
                fail(f"compose.yaml: service {name}: {dockerfile} missing")
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("."):
                if not (ROOT / src).exists():
                    fail(f"compose.yaml: service {name}: mounted {src} missing")
            elif src and src not in compose.get("volumes", {}):
                fail(f"compose.yaml: service {name}: volume {src} not declared")
        for dep in svc.get("depends_on", []):
            if dep not in services:
                fail(f"compose.yaml: service {name} depends on unknown {dep}")
    worker = services.get("worker", {})
    if not worker.get("deploy", {}).get("replicas"):
        fail("compose.yaml: the worker sets no deploy.replicas")
    redis_cmd = " ".join(map(str, services.get("redis", {}).get("command", [])))
    for setting in ("--appendonly yes", "--maxmemory-policy noeviction"):
        if setting not in redis_cmd:
            fail(f"compose.yaml: redis is not run with {setting}")
    # Files the Dockerfiles COPY must exist.
    for dockerfile in ROOT.glob("**/Dockerfile*"):
        if "target" in dockerfile.parts:
            continue
        for line in dockerfile.read_text().splitlines():
            m = re.match(r"\s*COPY\s+(?!--from)(.+)\s+\S+\s*$", line)
            if m:
                for src in m.group(1).split():
                    if not src.startswith("--") and not (ROOT / src).exists():
                        fail(f"{dockerfile.relative_to(ROOT)}: COPY {src}: no such file")


def static():
    defined = defined_metrics()
    exprs = dashboard_queries() + dashboard_variable_queries() + alert_exprs_static()
    exprs += deploy_queries()
    # Guard against a checker that matches nothing.
    planted = unknown_metrics(["rate(millrace_not_a_metric_total[1m])"], defined)
    if planted != {"millrace_not_a_metric_total"}:
        sys.exit("the metric-name check does not flag an unknown name: fix check.py")
    used = set()
    for where, expr in exprs:
        for name in sorted(unknown_metrics([expr], defined)):
            fail(f"{where}: uses {name}, which the worker does not emit (worker/src/metrics.rs)")
        used |= {base_name(n, defined) for n, _ in SELECTOR.findall(expr)} - {None} - BUILTIN
    readme = README.read_text()
    for name in sorted(defined):
        if f"`{name}`" not in readme:
            fail(f"README.md does not document {name}")
    unused = sorted(defined - used)
    check_dashboard_shape()
    check_compose()
    print(
        f"static: {len(exprs)} queries use {len(used)} of {len(defined)} metrics"
        + (f" (not on a dashboard: {', '.join(unused)})" if unused else "")
    )


def query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        return None, f"{body.get('errorType')}: {body.get('error')}"
    return body["data"]["result"], None


def live(base):
    ok = 0
    for where, expr in dashboard_queries() + deploy_queries():
        result, err = query(base, expr)
        if err:
            fail(f"{where}: invalid: {err}\n    {expr}")
        elif not result:
            fail(f"{where}: no series\n    {expr}")
        else:
            ok += 1
    for where, expr in dashboard_variable_queries():
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", expr.strip())
        if not m:
            fail(f"{where}: cannot check {expr}")
            continue
        result, err = query(base, f"count by ({m.group(2)}) ({m.group(1)})")
        if err or not result:
            fail(f"{where}: {expr} gives no values")
        else:
            ok += 1
    with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10) as r:
        groups = json.load(r)["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    if len(rules) != len(alert_exprs_static()):
        fail(f"Prometheus loaded {len(rules)} rules, alerts.yml has {len(alert_exprs_static())}")
    for rule in rules:
        where = f"alert {rule['name']}"
        if rule.get("health") != "ok":
            fail(f"{where}: health {rule.get('health')}: {rule.get('lastError')}")
            continue
        _, err = query(base, rule["query"])
        if err:
            fail(f"{where}: invalid: {err}")
            continue
        for name, labels in SELECTOR.findall(rule["query"]):
            selector = name + labels
            result, err = query(base, selector)
            if err or not result:
                fail(f"{where}: selector {selector} returns no series")
        ok += 1
    print(f"live: {ok} queries and rules checked against {base}")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "static":
        static()
    elif len(sys.argv) == 3 and sys.argv[1] == "live":
        live(sys.argv[2].rstrip("/"))
    else:
        sys.exit(__doc__)
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")


if __name__ == "__main__":
    main()
