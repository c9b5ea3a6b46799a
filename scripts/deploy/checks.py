"""Offline and live checks of deploy/, run by scripts/check-deploy.sh (one subcommand per check).

Each subcommand prints what it found wrong and exits non-zero on any problem. Needs PyYAML.
"""

import json
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
RULES = K8S / "prometheusrule.yaml"
DASHBOARD = DEPLOY / "grafana" / "video-ranking-service.json"
OPERATIONS = ROOT / "docs" / "operations.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"

# The Secrets and ConfigMaps the deployment guide names, with the keys each one holds.
SECRETS = {
    "database-credentials": {"DATABASE_URL"},
    "redis-credentials": {"REDIS_URL"},
    "clickhouse-credentials": {"CLICKHOUSE_URL"},
    "aws-credentials": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
    "feed-cursor-secret": {"CURSOR_SECRET"},
    "jwt-keys": None,  # mounted as files, one <kid>.pem per key
}
CONFIGMAPS = {
    "clickhouse-config": {"CLICKHOUSE_DATABASE"},
    "kafka-config": {"KAFKA_BROKERS", "KAFKA_ENGAGEMENT_TOPIC", "KAFKA_CDC_TOPIC", "KAFKA_CONSUMER_GROUP"},
    "s3-config": {"S3_BUCKET", "S3_REGION", "S3_ENDPOINT", "CDN_BASE_URL"},
}
# The health routes probes may use; each must be a route of the HTTP adapter (its utoipa paths).
PROBE_PATHS = {"/api/v1/health/ready", "/api/v1/health/live"}
HTTP_SOURCES = ROOT / "adapters" / "http" / "src"
SERVICE_PORT = 8000
RUN_AS_USER = 10001

problems = []


def problem(msg):
    problems.append(msg)
    print(f"  {msg}", file=sys.stderr)


def finish():
    sys.exit(1 if problems else 0)


def load_docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifest_files():
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def all_docs():
    return [(p, d) for p in manifest_files() for d in load_docs(p)]


# --- rules ------------------------------------------------------------------------------------

def cmd_extract_rules(out):
    (doc,) = load_docs(RULES)
    Path(out).write_text(yaml.safe_dump(doc["spec"], sort_keys=False, width=1000))


def alert_rules():
    (doc,) = load_docs(RULES)
    return [r for g in doc["spec"]["groups"] for r in g["rules"] if "alert" in r]


# --- kustomization ----------------------------------------------------------------------------

def cmd_kustomization():
    listed = set()
    for kfile in [K8S / "kustomization.yaml", K8S / "migrate" / "kustomization.yaml",
                  K8S / "drain-spool" / "kustomization.yaml",
                  DEPLOY / "grafana" / "kustomization.yaml"]:
        k = yaml.safe_load(kfile.read_text())
        for res in k.get("resources", []):
            target = (kfile.parent / res).resolve()
            if target.is_dir():
                if not (target / "kustomization.yaml").is_file():
                    problem(f"{kfile.relative_to(ROOT)}: {res} has no kustomization.yaml")
            elif not target.is_file():
                problem(f"{kfile.relative_to(ROOT)}: {res} does not exist")
            listed.add(target)
        for gen in k.get("configMapGenerator", []):
            for f in gen.get("files", []):
                src = kfile.parent / f.split("=", 1)[-1]
                if not src.is_file():
                    problem(f"{kfile.relative_to(ROOT)}: generator file {f} does not exist")
    for p in manifest_files():
        if p.resolve() not in listed:
            problem(f"{p.relative_to(ROOT)} is listed by no kustomization.yaml")
    finish()


# --- custom resources -------------------------------------------------------------------------

def cmd_crds():
    docs = all_docs()
    services = [d for _, d in docs if d["kind"] == "Service"]
    kinds = {}
    for path, d in docs:
        kinds.setdefault(d["kind"], []).append((path, d))
    for path, sm in kinds.get("ServiceMonitor", []):
        where = f"{path.relative_to(ROOT)}: ServiceMonitor {sm['metadata'].get('name')}"
        if sm.get("apiVersion") != "monitoring.coreos.com/v1":
            problem(f"{where}: apiVersion must be monitoring.coreos.com/v1")
        spec = sm.get("spec") or {}
        wanted = (spec.get("selector") or {}).get("matchLabels") or {}
        if not wanted:
            problem(f"{where}: spec.selector.matchLabels is required")
        matched = [s for s in services
                   if all(s["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]
        if not matched:
            problem(f"{where}: its selector matches no Service")
        names = (spec.get("namespaceSelector") or {}).get("matchNames")
        if names is not None and "nova" not in names:
            problem(f"{where}: namespaceSelector leaves out nova")
        endpoints = spec.get("endpoints") or []
        if not endpoints:
            problem(f"{where}: spec.endpoints is required")
        for ep in endpoints:
            unknown = set(ep) - {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels",
                                 "relabelings", "metricRelabelings"}
            if unknown:
                problem(f"{where}: unknown endpoint fields {sorted(unknown)}")
            if ep.get("path") != "/metrics":
                problem(f"{where}: endpoint path must be /metrics")
            if not re.fullmatch(r"\d+[smh]", str(ep.get("interval", ""))):
                problem(f"{where}: endpoint interval must be a duration like 15s")
            for s in matched:
                if ep.get("port") not in {p.get("name") for p in s["spec"]["ports"]}:
                    problem(f"{where}: Service {s['metadata']['name']} has no port named {ep.get('port')}")
    for path, pr in kinds.get("PrometheusRule", []):
        where = f"{path.relative_to(ROOT)}: PrometheusRule {pr['metadata'].get('name')}"
        if pr.get("apiVersion") != "monitoring.coreos.com/v1":
            problem(f"{where}: apiVersion must be monitoring.coreos.com/v1")
        groups = (pr.get("spec") or {}).get("groups") or []
        if not groups:
            problem(f"{where}: spec.groups is required")
        for g in groups:
            for r in g.get("rules", []):
                name = r.get("alert") or r.get("record")
                if not name or "expr" not in r:
                    problem(f"{where}: every rule needs alert (or record) and expr")
                    continue
                if "alert" in r:
                    if r.get("labels", {}).get("severity") not in {"critical", "warning"}:
                        problem(f"{where}: {name} needs severity critical or warning")
                    missing = {"summary", "description", "runbook_url"} - set(r.get("annotations", {}))
                    if missing:
                        problem(f"{where}: {name} lacks annotations {sorted(missing)}")
    if not kinds.get("ServiceMonitor") or not kinds.get("PrometheusRule"):
        problem("a ServiceMonitor and a PrometheusRule are expected")
    finish()


# --- references between manifests, the service and the image ---------------------------------

WORKLOADS = {"Deployment", "StatefulSet"}


def pod_specs(docs):
    for path, d in docs:
        if d["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield path, d, d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield path, d, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def cmd_refs():
    docs = all_docs()
    services = [d for _, d in docs if d["kind"] == "Service"]
    for path, d, spec in pod_specs(docs):
        where = f"{path.relative_to(ROOT)}: {d['kind']} {d['metadata']['name']}"
        sc = spec.get("securityContext", {})
        if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") != RUN_AS_USER:
            problem(f"{where}: runAsNonRoot with runAsUser {RUN_AS_USER} (the image's user) expected")
        template = (d["spec"]["jobTemplate"]["spec"] if d["kind"] == "CronJob" else d["spec"])["template"]
        labels = template["metadata"]["labels"]
        if d["kind"] in WORKLOADS and d["spec"]["selector"]["matchLabels"].items() - labels.items():
            problem(f"{where}: the selector does not match the pod labels")
        for vol in spec.get("volumes", []):
            if "secret" in vol and vol["secret"]["secretName"] not in SECRETS:
                problem(f"{where}: Secret {vol['secret']['secretName']} is not one the guide names")
        for c in spec.get("initContainers", []) + spec["containers"]:
            csc = c.get("securityContext", {})
            if not csc.get("readOnlyRootFilesystem") or csc.get("capabilities", {}).get("drop") != ["ALL"]:
                problem(f"{where}: read-only root filesystem and dropping ALL capabilities expected")
            env = {e["name"]: e for e in c.get("env", [])}
            for e in env.values():
                ref = e.get("valueFrom", {})
                for kind, known in (("secretKeyRef", SECRETS), ("configMapKeyRef", CONFIGMAPS)):
                    if kind in ref:
                        name, key = ref[kind]["name"], ref[kind]["key"]
                        if name not in known:
                            problem(f"{where}: {kind} {name} is not one the guide names")
                        elif known[name] is not None and key not in known[name]:
                            problem(f"{where}: {name} holds no key {key}")
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            if d["kind"] in WORKLOADS:
                if ports.get("http") != SERVICE_PORT or env.get("APP_PORT", {}).get("value") != str(SERVICE_PORT):
                    problem(f"{where}: port http must be {SERVICE_PORT}, the same as APP_PORT")
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    get = c.get(probe, {}).get("httpGet")
                    if not get:
                        problem(f"{where}: {probe} (httpGet) is missing")
                    elif get["path"] not in PROBE_PATHS or get["port"] not in {"http", SERVICE_PORT}:
                        problem(f"{where}: {probe} {get['path']} on {get['port']} is not a health route on port http")
                serves = c.get("args", ["serve"])[:1] == ["serve"]
                spool = env.get("EVENT_SPOOL_DIR", {}).get("value", "")
                mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
                if not any(spool == m or spool.startswith(m + "/") for m in mounts):
                    problem(f"{where}: EVENT_SPOOL_DIR is not on a mounted volume")
                # The API's spool holds accepted events: it must outlive the pod (a claim).
                claims = {t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])}
                spool_mount = next((m for m in c.get("volumeMounts", [])
                                    if spool == m["mountPath"] or spool.startswith(m["mountPath"] + "/")), None)
                if serves and "KAFKA_BROKERS" in env and (spool_mount is None or spool_mount["name"] not in claims):
                    problem(f"{where}: the event spool must be on a PersistentVolumeClaim (volumeClaimTemplates)")
                # The API needs its keys mounted; the worker serves no feed and has none.
                keys_dir = env.get("JWT_PUBLIC_KEYS_DIR", {}).get("value")
                if serves and keys_dir not in mounts:
                    problem(f"{where}: JWT_PUBLIC_KEYS_DIR is not a mounted volume")
                if serves and "CURSOR_SECRET" not in env:
                    problem(f"{where}: CURSOR_SECRET is not set")
                grace = int(env.get("SHUTDOWN_GRACE_SECS", {}).get("value", "30"))
                pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
                pre_secs = int(pre[1]) if len(pre) == 2 and pre[0] == "sleep" else 0
                if spec.get("terminationGracePeriodSeconds", 30) <= grace + pre_secs:
                    problem(f"{where}: terminationGracePeriodSeconds must exceed preStop + SHUTDOWN_GRACE_SECS")
                exposed = [s for s in services
                           if s["spec"]["selector"].items() <= labels.items()]
                if not exposed:
                    problem(f"{where}: no Service selects its pods")
                for s in exposed:
                    for sp in s["spec"]["ports"]:
                        if sp.get("targetPort") not in ports and sp.get("targetPort") not in ports.values():
                            problem(f"Service {s['metadata']['name']}: targetPort {sp.get('targetPort')} is no container port")
    routes = {m for f in HTTP_SOURCES.glob("*.rs")
              for m in re.findall(r'path = "([^"]+)"', f.read_text())}
    for path in sorted(PROBE_PATHS - routes):
        problem(f"{path} is not a route of adapters/http")
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for needle in (f"EXPOSE {SERVICE_PORT}", f"USER {RUN_AS_USER}", 'ENTRYPOINT ["/usr/local/bin/video-ranking-service"]',
                   'CMD ["serve"]', "FROM rust:1.95-bookworm AS builder", "FROM debian:bookworm-slim"):
        if needle not in dockerfile:
            problem(f"deploy/Dockerfile: expected {needle!r}")
    finish()


# --- runbooks ---------------------------------------------------------------------------------

def github_anchor(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def cmd_runbooks():
    anchors = {github_anchor(m) for m in re.findall(r"^#+\s+(.*)$", OPERATIONS.read_text(), re.M)}
    for r in alert_rules():
        url = r["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        if not path.endswith("docs/operations.md") or anchor not in anchors:
            problem(f"{r['alert']}: runbook_url {url} names no section of docs/operations.md")
        if github_anchor(r["alert"]) not in anchors:
            problem(f"{r['alert']}: docs/operations.md has no section named after it")
    finish()


# --- metric names -----------------------------------------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "bool", "offset", "inf", "nan"}


def metric_names(expr):
    """Metric names an expression selects (histogram suffixes stripped)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)\b(\s*\()?", s):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return names


def dashboard_exprs():
    dash = json.loads(DASHBOARD.read_text())
    exprs = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            exprs.append((p["title"], t["expr"]))
    for v in dash["templating"]["list"]:
        if v.get("type") == "query":
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", v["definition"])
            exprs.append((f"variable {v['name']}", inner.group(1) if inner else v["definition"]))
    return exprs


def documented_metrics():
    return set(re.findall(r"^\|\s*`([a-zA-Z_:][\w:]*)`\s*\|", METRICS_DOC.read_text(), re.M))


def cmd_metric_names():
    documented = documented_metrics()
    used = {}
    for r in alert_rules():
        for n in metric_names(r["expr"]):
            used.setdefault(n, []).append(f"alert {r['alert']}")
    for where, e in dashboard_exprs():
        for n in metric_names(e):
            used.setdefault(n, []).append(f"dashboard {where}")
    for n in sorted(set(used) - documented):
        problem(f"{n} (used by {', '.join(sorted(set(used[n]))[:3])}) is not in docs/metrics.md")
    if not used:
        problem("no metric names found")
    finish()


# --- dashboard --------------------------------------------------------------------------------

def cmd_dashboard():
    dash = json.loads(DASHBOARD.read_text())
    names = [v["name"] for v in dash["templating"]["list"]]
    if "datasource" not in names:
        problem("the dashboard needs a datasource variable")
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        problem("panel ids repeat")
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problem(f"panel {p['title']}: datasource must be ${{datasource}}")
        refs = [t["refId"] for t in p.get("targets", [])]
        if not refs or len(refs) != len(set(refs)):
            problem(f"panel {p['title']}: targets need distinct refIds")
    used = set().union(*(metric_names(e) for _, e in dashboard_exprs()))
    for required in ("feed_cache_hits_total", "feed_generation_duration_seconds", "http_request_duration_seconds",
                     "http_requests_total", "process_resident_memory_bytes", "process_cpu_seconds_total",
                     "process_open_fds", "database_pool_size", "engagement_events_recorded_total",
                     "engagement_event_processing_lag_seconds", "event_spool_bytes", "candidate_snapshot_videos",
                     "candidate_snapshot_age_seconds", "feed_stage_duration_seconds"):
        if required not in used:
            problem(f"no panel shows {required}")
    finish()


# --- live: a real Prometheus scraping the running service -------------------------------------

def api(base, path, **params):
    url = f"{base}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def substitute(expr):
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "5m")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def cmd_live(base, rule_count):
    """Waits for the target and every rule to be evaluated, then asserts on the results."""
    deadline = time.time() + 60
    while True:
        targets = api(base, "/api/v1/targets")["data"]["activeTargets"]
        scrapes = api(base, "/api/v1/query", query="count_over_time(up[1m])")["data"]["result"]
        rules = [r for g in api(base, "/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        evaluated = [r for r in rules if r.get("health") != "unknown"]
        done = (targets and all(t["health"] == "up" for t in targets) and scrapes
                and float(scrapes[0]["value"][1]) >= 3 and len(evaluated) == len(rules) == int(rule_count))
        if done or time.time() > deadline:
            break
        time.sleep(0.5)
    if not targets or any(t["health"] != "up" for t in targets):
        problem(f"scrape target not up: {[(t['scrapeUrl'], t['health'], t.get('lastError')) for t in targets]}")
    if not scrapes or float(scrapes[0]["value"][1]) < 3:
        problem("fewer than 3 scrapes within 60 s")
    if len(rules) != int(rule_count):
        problem(f"Prometheus loaded {len(rules)} rules, the PrometheusRule has {rule_count}")
    for r in rules:
        if r.get("health") != "ok":
            problem(f"rule {r['name']}: health {r.get('health')} {r.get('lastError', '')}")
    for where, expr in dashboard_exprs():
        q = substitute(expr)
        try:
            res = api(base, "/api/v1/query", query=q)
            if res.get("status") != "success":
                problem(f"dashboard {where}: {q}: {res}")
        except urllib.error.HTTPError as e:
            problem(f"dashboard {where}: {q}: {e.code} {e.read().decode(errors='replace')}")
    present = {s for s in api(base, "/api/v1/label/__name__/values")["data"]}
    for name in ("feed_cache_hits_total", "feed_cache_misses_total", "feed_generation_total",
                 "feed_generation_duration_seconds_bucket", "http_requests_total",
                 "http_request_duration_seconds_bucket", "candidate_snapshot_videos"):
        if name not in present:
            problem(f"{name} was not scraped")
    referenced = set()
    for r in alert_rules():
        referenced |= metric_names(r["expr"])
    for _, e in dashboard_exprs():
        referenced |= metric_names(e)
    scraped = {re.sub(r"_(bucket|sum|count)$", "", n) for n in present}
    absent = sorted(referenced - scraped)
    if absent:
        # Not a failure: embedded mode has no PostgreSQL pool, Kafka or ClickHouse, and counters
        # with labels appear only once incremented.
        print(f"note: not exported in embedded mode or before first use: {', '.join(absent)}", file=sys.stderr)
    finish()


def cmd_builtin_files():
    """Manifest files holding only built-in kinds (kubernetes-validate has no schema for CRDs)."""
    for p in manifest_files():
        if all(d["apiVersion"].split("/")[0] != "monitoring.coreos.com" for d in load_docs(p)):
            print(p.relative_to(ROOT))


def cmd_rule_count():
    print(sum(len(g["rules"]) for g in load_docs(RULES)[0]["spec"]["groups"]))


COMMANDS = {
    "extract-rules": cmd_extract_rules,
    "rule-count": cmd_rule_count,
    "builtin-files": cmd_builtin_files,
    "kustomization": cmd_kustomization,
    "crds": cmd_crds,
    "refs": cmd_refs,
    "runbooks": cmd_runbooks,
    "metric-names": cmd_metric_names,
    "dashboard": cmd_dashboard,
    "live": cmd_live,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
