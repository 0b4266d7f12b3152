"""The chart under test, rendered with Helm 4's engine (helm-python-sdk: Helm's Go SDK behind a C
ABI, no helm binary and no cluster), and the value sets the tests render it with.

Renders are cached per value set: every test reads the same output, as `helm template` would give.
"""

import copy
import functools
import json
import os

import helm_python as helm
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
CHART = os.path.join(REPO, 'charts', 'sinew')
RELEASE = 'sinew'
NAMESPACE = 'sinew-system'
# The Kubernetes version the chart is linted and validated for.
KUBE_VERSION = '1.33'

# Non-default values: every switch flipped, every image and resource changed.
CUSTOM = {
    'images': {
        'proxy': {'repository': 'registry.example.com:5000/mesh/proxy', 'tag': '9.9.9-rc.1'},
        'controlPlane': {'repository': 'registry.example.com:5000/mesh/cp', 'tag': 'dev_build'},
        'pullPolicy': 'Always',
    },
    'trustDomain': 'example.org',
    'controlPlane': {
        'replicas': 1,
        'logLevel': 'info,sinew_control_plane::cluster=debug',
        'resources': {'requests': {'cpu': '250m', 'memory': '256Mi'}, 'limits': {'cpu': 4, 'memory': '2Gi'}},
    },
    'proxy': {
        'logLevel': 'debug',
        'nativeSidecar': False,
        'resources': {'requests': {'cpu': '50m', 'memory': '64Mi'}, 'limits': {'cpu': 1, 'memory': '512Mi'}},
        'initResources': {'requests': {'cpu': '20m', 'memory': '16Mi', 'ephemeral-storage': '1Mi'},
                          'limits': {'cpu': '200m', 'memory': '64Mi'}},
    },
    'tracing': {'sampling': 12.5},
    'accessLog': {'enabled': True, 'encoding': 'json'},
    'grafana': {'dashboards': {'enabled': True}},
    'meshAddressRanges': {'serviceCIDRs': ['10.96.0.0/12', 'fd00:10:96::/112'], 'podCIDRs': ['10.244.0.0/16']},
    'istioCRDs': {'enabled': False},
    'injector': {'failurePolicy': 'Ignore'},
    'jaeger': {'enabled': True, 'image': {'repository': 'jaegertracing/all-in-one', 'tag': '1.75.0'},
               'resources': {'limits': {'memory': '512Mi'}}},
}

# Jaeger on, but an explicit tracing endpoint: the explicit one wins.
EXPLICIT_TRACING = {
    'jaeger': {'enabled': True},
    'tracing': {'endpoint': 'http://otel-collector.observability.svc:4317', 'sampling': 0},
}

VALUE_SETS = {'default': None, 'custom': CUSTOM, 'explicit-tracing': EXPLICIT_TRACING}


@functools.lru_cache(maxsize=None)
def _render(values_json, namespace):
    values = json.loads(values_json)
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=namespace, is_install=True)


def render(values=None, namespace=NAMESPACE):
    """Template path → rendered text, as `helm template` renders it (NOTES.txt included)."""
    return dict(_render(json.dumps(values), namespace))


# libyaml's parser when PyYAML has it (the CRDs are 270 KB of YAML), else the pure-Python one.
SafeLoader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)


@functools.lru_cache(maxsize=None)
def _documents(values_json):
    docs = []
    for path, text in sorted(_render(values_json, NAMESPACE).items()):
        if path.endswith('NOTES.txt'):
            continue
        docs.extend(d for d in yaml.load_all(text, Loader=SafeLoader) if d is not None)
    return docs


def documents(values=None):
    """Every object the release would apply: the rendered templates', in order (a copy the
    caller may change)."""
    return copy.deepcopy(_documents(json.dumps(values)))


def crd_files():
    """The CRDs under crds/, which Helm applies as they are before the templates."""
    folder = os.path.join(CHART, 'crds')
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            out[name] = yaml.load(f, Loader=SafeLoader)
    return out


def istio_crd_files():
    """The generated Istio CRDs the istio-crds template renders."""
    folder = os.path.join(CHART, 'files', 'istio-crds')
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            out[name] = yaml.load(f, Loader=SafeLoader)
    return out


def find(docs, kind, name):
    found = [d for d in docs if d['kind'] == kind and d['metadata']['name'] == name]
    if len(found) != 1:
        raise AssertionError(f'{len(found)} {kind} named {name}')
    return found[0]


def injector_config(values=None):
    config_map = find(documents(values), 'ConfigMap', 'sinew-injector')
    return yaml.safe_load(config_map['data']['config.yaml'])


def merged_values(values=None):
    """The values an install would use (the chart's defaults with `values` over them)."""
    with helm.Chart.load(CHART) as chart:
        return chart.merge_values(copy.deepcopy(values))
