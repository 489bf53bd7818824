#!/usr/bin/env python3
"""Checks the Grafana dashboards against what the daemons export today.

Every PromQL expression in deploy/grafana/dashboards/*.json is parsed (promql-parser, the
Python binding of the Rust `promql-parser` crate, so a malformed query fails here and not on
the screen at 3 a.m.). Then each metric name, label name and `label="value"` it uses must be
defined by the Rust sources of the daemons (crates/*/src, tests and the benchmark excluded,
since they only read metrics): a name counts as defined when it appears there as a string
literal, either exactly or without the suffixes a Prometheus client library appends when it
renders (`_total`, `_bucket`, `_sum`, `_count`, `_created`, and a unit such as `_seconds`).
Series that Prometheus makes itself (`up`, `scrape_*`) and target labels (`job`, `instance`)
need no definition. Each panel's datasource must be the provisioned one
(deploy/grafana/provisioning/datasources).

With --exposition FILE..., the names must also appear in those /metrics scrapes of running
daemons; with --prometheus URL, every query must also evaluate, on that Prometheus, to at
least one series (scripts/deploy-check's pm2 check does both with its fleet: the parser's,
the senders' and pushapi's /metrics, scraped by a real Prometheus during a push).

Usage: dashboard_metrics.py [REPO_DIR] [--exposition FILE...] [--prometheus URL]; exit status 1
naming every problem, 0 when clean.
"""

import argparse
import json
import pathlib
import re
import sys
import urllib.parse
import urllib.request

import promql_parser
from ruamel.yaml import YAML

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
STRING_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')
RENDER_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created", "_info")
UNIT_SUFFIXES = ("_seconds", "_milliseconds", "_bytes", "_ratio", "_percent", "_celsius")
PROMETHEUS_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}
TARGET_LABELS = {"job", "instance", "__name__", "le", "quantile"}
# Grafana's own variables, replaced by a plausible value before parsing.
GRAFANA_VARIABLE = re.compile(r"\$(__rate_interval|__interval|__range|\{__rate_interval\}|\{__interval\}|\{__range\})")


def rust_literals(repo):
    """String literals of the daemons' sources, test modules and tests/ left out."""
    literals = set()
    for path in sorted(repo.glob("crates/*/src/**/*.rs")):
        crate = path.relative_to(repo).parts[1]
        if crate in ("bench", "testkit"):
            continue
        text = path.read_text(encoding="utf-8")
        # Unit tests sit at the bottom of the file they test (CONVENTIONS.md): cut them off.
        text = text.split("#[cfg(test)]")[0]
        literals.update(m.group(1) for m in STRING_LITERAL.finditer(text))
    return literals


def candidates(name):
    """`name` and what a client library may have been given to render it."""
    names = {name}
    for suffix in RENDER_SUFFIXES:
        if name.endswith(suffix):
            names.add(name[: -len(suffix)])
    for base in list(names):
        for unit in UNIT_SUFFIXES:
            if base.endswith(unit):
                names.add(base[: -len(unit)])
    return names


def walk(node, found):
    """Collects (kind, value) pairs from a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            found.add(("metric", node.name))
        matchers = node.matchers
        for matcher in list(matchers.matchers) + [m for group in matchers.or_matchers for m in group]:
            if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
                found.add(("metric", matcher.value))
            else:
                found.add(("label", matcher.name))
                if matcher.op == promql_parser.MatchOp.Equal and matcher.value:
                    found.add(("value", (matcher.name, matcher.value)))
        return
    if isinstance(node, promql_parser.AggregateExpr):
        if node.modifier is not None:
            for label in node.modifier.labels:
                found.add(("label", label))
        walk(node.expr, found)
        if node.param is not None:
            walk(node.param, found)
        return
    if isinstance(node, promql_parser.BinaryExpr):
        modifier = node.modifier
        if modifier is not None:
            if modifier.matching is not None:
                for label in modifier.matching.labels:
                    found.add(("label", label))
            for label in modifier.group_labels or []:
                found.add(("label", label))
        walk(node.lhs, found)
        walk(node.rhs, found)
        return
    if isinstance(node, promql_parser.Call):
        for arg in node.args:
            walk(arg, found)
        return
    if isinstance(node, promql_parser.MatrixSelector):
        walk(node.vector_selector, found)
        return
    if isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
        walk(node.expr, found)
        return
    if isinstance(node, (promql_parser.NumberLiteral, promql_parser.StringLiteral)):
        return
    raise TypeError(f"unexpected PromQL node {type(node).__name__}")


def expressions(node, where):
    """(where, expr) for every PromQL query in a dashboard (panels, rows, variables)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield where, value
            elif key == "query" and isinstance(value, str) and "(" in value:
                yield where, value
            else:
                title = node.get("title") if isinstance(node.get("title"), str) else None
                yield from expressions(value, f"panel {title!r}" if title else where)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item, where)


def datasource_uids(node):
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            yield node.get("title", "a query"), ds["uid"]
        for value in node.values():
            yield from datasource_uids(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_uids(item)


def exposed_names(files):
    """Metric names in Prometheus text exposition files."""
    names = set()
    for path in files:
        for line in pathlib.Path(path).read_text().splitlines():
            if line and not line.startswith("#"):
                names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def evaluate(prometheus, expr):
    """The result of an instant query, or raises with Prometheus' error."""
    url = f"{prometheus.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo", nargs="?", default=".")
    parser.add_argument("--exposition", nargs="+", default=[], metavar="FILE")
    parser.add_argument("--prometheus", metavar="URL")
    args = parser.parse_args()
    repo = pathlib.Path(args.repo).resolve()
    exposed = exposed_names(args.exposition) if args.exposition else None
    if exposed is not None and not exposed:
        print(f"dashboard check: no metrics in {args.exposition}", file=sys.stderr)
        return 1
    literals = rust_literals(repo)
    if not literals:
        print("dashboard check: no Rust sources found under crates/*/src", file=sys.stderr)
        return 1
    provisioned = set()
    for path in sorted(repo.glob("deploy/grafana/provisioning/datasources/*.y*ml")):
        for ds in (YAML(typ="safe").load(path.read_text()) or {}).get("datasources", []):
            provisioned.add(ds.get("uid"))
    problems = []
    dashboards = sorted(repo.glob("deploy/grafana/dashboards/*.json"))
    if not dashboards:
        problems.append("no dashboards in deploy/grafana/dashboards")
    checked = set()
    evaluated = 0
    for path in dashboards:
        rel = path.relative_to(repo)
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{rel}: not JSON: {e}")
            continue
        for title, uid in datasource_uids(dashboard):
            if uid not in provisioned:
                problems.append(f"{rel}: {title!r} uses datasource uid {uid!r}; provisioned: {sorted(provisioned)}")
        queries = list(expressions(dashboard.get("panels", []), "a panel"))
        queries += list(expressions(dashboard.get("templating", {}), "a variable"))
        if not queries:
            problems.append(f"{rel}: no PromQL queries found")
        for where, expr in queries:
            try:
                tree = promql_parser.parse(GRAFANA_VARIABLE.sub("5m", expr))
            except Exception as e:  # the binding raises plain exceptions with the parser's message
                problems.append(f"{rel}: {where}: not valid PromQL: {expr!r}: {e}")
                continue
            if args.prometheus:
                # Grafana's $__rate_interval is at least four scrape intervals; 30 s covers the
                # test Prometheus' 1 s scrapes.
                try:
                    result = evaluate(args.prometheus, GRAFANA_VARIABLE.sub("30s", expr))
                    evaluated += 1
                    if not result:
                        problems.append(f"{rel}: {where}: {expr!r} returned no series from the running fleet")
                except Exception as e:
                    problems.append(f"{rel}: {where}: Prometheus could not evaluate {expr!r}: {e}")
            found = set()
            walk(tree, found)
            for kind, value in sorted(found, key=str):
                if kind == "metric":
                    checked.add(value)
                    if value not in PROMETHEUS_SERIES and not candidates(value) & literals:
                        problems.append(f"{rel}: {where}: metric {value} is not exported by any daemon (no such name in crates/*/src)")
                    if exposed is not None and value not in PROMETHEUS_SERIES and value not in exposed:
                        problems.append(f"{rel}: {where}: metric {value} is not in the running daemons' /metrics")
                elif kind == "label":
                    if value not in TARGET_LABELS and value not in literals:
                        problems.append(f"{rel}: {where}: label {value!r} is not set by any daemon")
                elif kind == "value":
                    label, text = value
                    if label not in TARGET_LABELS and text not in literals:
                        problems.append(f"{rel}: {where}: {label}={text!r}: no daemon sets that value")
    for problem in problems:
        print(f"dashboard check: {problem}", file=sys.stderr)
    if problems:
        return 1
    live = f", all in the live /metrics of {len(args.exposition)} daemons" if exposed is not None else ""
    if args.prometheus:
        live += f"; {evaluated} queries answered by Prometheus with data"
    print(f"dashboard check: {len(dashboards)} dashboard(s), {len(checked)} metric names, all defined in the daemons' sources{live}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
