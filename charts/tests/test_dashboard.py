#!/usr/bin/env python3
"""The chart's Grafana dashboard (charts/sinew/files/dashboards/): rendered as a ConfigMap Grafana's
sidecar loads only when grafana.dashboards.enabled, and every PromQL query in it names only metrics
and labels docs/observability.md says the proxies export, so it works unchanged against them.

    target/py-venv/bin/python -m unittest discover -s charts/tests
"""

import json
import os
import re
import unittest

import chart
from chart import documents, find

DASHBOARDS = os.path.join(chart.CHART, 'files', 'dashboards')
DOCS = os.path.join(chart.REPO, 'docs', 'observability.md')

# PromQL's functions, aggregations and keywords: identifiers in a query that are not metrics.
PROMQL_WORDS = {
    'sum', 'avg', 'min', 'max', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'group',
    'count_values', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and',
    'or', 'unless', 'offset', 'rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'histogram_quantile',
    'sum_over_time', 'avg_over_time', 'max_over_time', 'min_over_time', 'count_over_time', 'abs',
    'ceil', 'floor', 'round', 'clamp_min', 'clamp_max', 'vector', 'scalar', 'time', 'label_replace',
    'label_join', 'absent', 'sort', 'sort_desc', 'inf', 'nan',
}
# Labels every histogram series has besides the metric's own.
HISTOGRAM_LABELS = {'le'}


def documented():
    """The metric and label names docs/observability.md gives (every `backticked` identifier);
    a histogram's name also allows its _bucket, _sum and _count series."""
    with open(DOCS) as f:
        words = set(re.findall(r'`([a-z_][a-z0-9_]*)`', f.read()))
    metrics = {w for w in words if w.startswith('istio_')}
    metrics |= {f'{m}_{suffix}' for m in metrics for suffix in ('bucket', 'sum', 'count')}
    return metrics, words | HISTOGRAM_LABELS


def names_in(query):
    """(metric names, label names) a PromQL query (or Grafana's label_values(...)) uses."""
    labels = set()
    # Label matchers: {a="x", b!~"y"} — keep the keys, drop the values.
    for body in re.findall(r'\{([^}]*)\}', query):
        labels |= set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)', body))
    # Grouping: by (a, b) / without (a).
    for body in re.findall(r'\b(?:by|without|on|ignoring)\s*\(([^)]*)\)', query):
        labels |= {w.strip() for w in body.split(',') if w.strip()}
    # label_values(metric{...}, label)
    for label in re.findall(r'label_values\([^,]*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)', query):
        labels.add(label)
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)
    stripped = re.sub(r'\{[^}]*\}', '', stripped)
    stripped = re.sub(r'\[[^\]]*\]', '', stripped)
    stripped = re.sub(r'\b(?:by|without|on|ignoring)\s*\([^)]*\)', '', stripped)
    stripped = re.sub(r'label_values\(([^,]*),[^)]*\)', r'\1', stripped)
    identifiers = set(re.findall(r'(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)', stripped))
    metrics = {i for i in identifiers if i not in PROMQL_WORDS}
    return metrics, labels


def dashboards():
    out = {}
    for name in sorted(os.listdir(DASHBOARDS)):
        with open(os.path.join(DASHBOARDS, name)) as f:
            out[name] = json.load(f)
    return out


def queries(dashboard):
    """Every query in a dashboard: its panels' targets and its query variables."""
    for panel in dashboard.get('panels', []):
        for target in panel.get('targets', []):
            yield f"panel {panel['title']!r}", target['expr']
    for variable in dashboard.get('templating', {}).get('list', []):
        if variable.get('type') == 'query':
            query = variable['query']
            yield f"variable {variable['name']!r}", query['query'] if isinstance(query, dict) else query


class DashboardTest(unittest.TestCase):
    def test_every_query_names_only_documented_metrics_and_labels(self):
        metrics, labels = documented()
        self.assertIn('istio_requests_total', metrics, 'docs/observability.md lists no metrics')
        found = 0
        for name, dashboard in dashboards().items():
            for where, query in queries(dashboard):
                used_metrics, used_labels = names_in(query)
                self.assertTrue(used_metrics, f'{name} {where}: no metric in {query}')
                self.assertEqual(used_metrics - metrics, set(), f'{name} {where}: {query}')
                self.assertEqual(used_labels - labels, set(), f'{name} {where}: {query}')
                found += 1
        self.assertGreaterEqual(found, 8)

    def test_the_check_catches_a_metric_or_label_the_proxies_do_not_export(self):
        metrics, labels = documented()
        used, used_labels = names_in('sum by (cluster_name) (rate(envoy_cluster_upstream_rq_total{reporter="x"}[5m]))')
        self.assertEqual(used - metrics, {'envoy_cluster_upstream_rq_total'})
        self.assertEqual(used_labels - labels, {'cluster_name'})
        used, _ = names_in('histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_seconds_bucket[1m])))')
        self.assertEqual(used - metrics, {'istio_request_duration_seconds_bucket'})

    def test_panels_cover_rate_success_latency_percentiles_and_tcp_bytes(self):
        dashboard = dashboards()['sinew-mesh.json']
        exprs = ' '.join(q for _, q in queries(dashboard))
        for needle in ['rate(istio_requests_total', 'response_code!~"5.."', 'istio_tcp_sent_bytes_total',
                       'istio_tcp_received_bytes_total', 'by (destination_service)']:
            self.assertIn(needle, exprs)
        for q in ('0.5', '0.95', '0.99'):
            self.assertIn(f'histogram_quantile({q}, sum by (le, destination_service) '
                          '(rate(istio_request_duration_milliseconds_bucket', exprs)
        ids = [p['id'] for p in dashboard['panels']]
        self.assertEqual(len(ids), len(set(ids)), 'panel ids are unique')

    def test_rendered_as_a_labelled_config_map_only_when_enabled(self):
        self.assertNotIn('sinew-grafana-dashboards', [d['metadata']['name'] for d in documents()])
        values = {'grafana': {'dashboards': {'enabled': True}}}
        config_map = find(documents(values), 'ConfigMap', 'sinew-grafana-dashboards')
        self.assertEqual(config_map['metadata']['labels']['grafana_dashboard'], '1')
        self.assertEqual(config_map['metadata']['namespace'], chart.NAMESPACE)
        self.assertEqual(set(config_map['data']), set(dashboards()))
        for name, dashboard in dashboards().items():
            self.assertEqual(json.loads(config_map['data'][name]), dashboard)


if __name__ == '__main__':
    unittest.main(verbosity=1)
