#!/usr/bin/env python3
"""The Helm chart charts/sinew: lint, render, Kubernetes 1.33 schemas, values schema, and what the
rendered objects promise (the injector settings contract, RBAC as documented, webhooks, images).

    target/py-venv/bin/python -m unittest discover -s charts/tests   # scripts/test.sh runs it

Needs helm-python-sdk and kubernetes-validate (the venv scripts/lib/bootstrap.sh makes): without
them the import fails and so does the run.
"""

import json
import os
import re
import unittest

import helm_python as helm
import kubernetes_validate
import yaml

import chart
from chart import CUSTOM, EXPLICIT_TRACING, NAMESPACE, VALUE_SETS, documents, find, injector_config, render

# The injector settings file of the contract (fields and their defaults), as the lead fixed it in
# the issue's working notes: the chart's defaults must produce exactly this.
CONTRACT_DEFAULTS = {
    'proxyImage': 'ghcr.io/sinew-mesh/sinew-proxy:0.1.0',
    'imagePullPolicy': 'IfNotPresent',
    'controlPlaneAddress': 'sinew-control-plane.sinew-system.svc:15012',
    'controlPlaneIdentity': 'spiffe://cluster.local/ns/sinew-system/sa/sinew-control-plane',
    'trustDomain': 'cluster.local',
    'nativeSidecar': True,
    'logLevel': 'info',
    'proxyResources': {'requests': {'cpu': '10m', 'memory': '40Mi'}, 'limits': {'cpu': '2', 'memory': '256Mi'}},
    'initResources': {'requests': {'cpu': '10m', 'memory': '10Mi'}, 'limits': {'cpu': '100m', 'memory': '50Mi'}},
    'tracing': {'endpoint': '', 'sampling': 1.0},
    'meshAddressRanges': [],
}
INJECTOR_CONFIG_PATH = '/etc/sinew/injector/config.yaml'


def serious(report):
    """Lint findings `helm lint --strict` fails on: warnings and errors (info is advice)."""
    return [m for m in report['messages'] if m['severity'] >= 2] + report['errors']


class LintTest(unittest.TestCase):
    def test_lint_strict_passes_for_kubernetes_1_33_with_every_value_set(self):
        for name, values in VALUE_SETS.items():
            with self.subTest(values=name):
                report = helm.lint(chart.CHART, values, strict=True, namespace=NAMESPACE,
                                   kube_version=f'v{chart.KUBE_VERSION}.0')
                self.assertEqual(report['total_charts_linted'], 1)
                self.assertEqual(serious(report), [])

    def test_lint_strict_reports_a_broken_value(self):
        report = helm.lint(chart.CHART, {'controlPlane': {'replicas': 'two'}}, strict=True,
                           namespace=NAMESPACE)
        self.assertTrue(any('replicas' in str(m) for m in serious(report)), report)


class KubernetesSchemaTest(unittest.TestCase):
    """Every object the release applies, validated strictly (unknown fields are errors) against
    the Kubernetes 1.33 OpenAPI schemas kubernetes-validate ships."""

    def validate(self, doc, where):
        try:
            kubernetes_validate.validate(doc, chart.KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            self.fail(f'{where}: {doc["kind"]}/{doc["metadata"]["name"]}: {e.message} at {list(e.path)}')
        except kubernetes_validate.SchemaNotFoundError as e:
            self.fail(f'{where}: {e.message}')

    def test_every_rendered_object_is_valid_for_kubernetes_1_33(self):
        seen = set()
        for name, values in VALUE_SETS.items():
            for doc in documents(values):
                key = yaml.safe_dump(doc)
                if key in seen:  # the same object in two value sets is validated once
                    continue
                seen.add(key)
                self.validate(doc, name)
        self.assertGreater(len(seen), 15)

    def test_the_crds_helm_applies_unrendered_are_valid_for_kubernetes_1_33(self):
        files = chart.crd_files()
        self.assertEqual(sorted(files), ['destinationrules.sinew.dev.yaml', 'virtualservices.sinew.dev.yaml'])
        for name, doc in files.items():
            self.validate(doc, name)

    def test_an_invalid_object_is_caught(self):
        # The validation above can fail: a misspelt field in a real rendered object is refused.
        deployment = find(documents(), 'Deployment', 'sinew-control-plane')
        deployment['spec']['template']['spec']['containers'][0]['imagePulPolicy'] = 'Always'
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(deployment, chart.KUBE_VERSION, strict=True)


class ValuesSchemaTest(unittest.TestCase):
    def refused(self, values):
        with helm.Chart.load(chart.CHART) as c:
            with self.assertRaises(helm.HelmValuesError) as caught:
                c.render(values, name=chart.RELEASE, namespace=NAMESPACE)
        return str(caught.exception)

    def test_a_misspelt_key_is_refused_naming_it(self):
        for values, word in [
            ({'proxy': {'nativeSidcar': False}}, 'nativeSidcar'),
            ({'jaeger': {'enable': True}}, 'enable'),
            ({'controlPlane': {'resources': {'requets': {'cpu': '1'}}}}, 'requets'),
            ({'proxy': {'resources': {'limits': {'cpus': '1'}}}}, 'cpus'),
            ({'image': {'proxy': {'tag': 'x'}}}, 'image'),
        ]:
            with self.subTest(word=word):
                self.assertIn(word, self.refused(values))

    def test_a_wrong_type_or_value_is_refused(self):
        for values, where in [
            ({'proxy': {'nativeSidecar': 'false'}}, 'nativeSidecar'),
            ({'tracing': {'sampling': 100.5}}, 'sampling'),
            ({'tracing': {'sampling': -1}}, 'sampling'),
            ({'tracing': {'endpoint': 'collector:4317'}}, 'endpoint'),
            ({'tracing': {'endpoint': 'http://collector:4317/v1/traces'}}, 'endpoint'),
            ({'accessLog': {'encoding': 'yaml'}}, 'encoding'),
            ({'accessLog': {'enabled': 'yes'}}, 'enabled'),
            ({'grafana': {'dashboards': {'enabled': 1}}}, 'enabled'),
            ({'meshAddressRanges': {'podCIDRs': ['10.244.0.0']}}, 'podCIDRs'),
            ({'meshAddressRanges': {'podCIDRs': ['10.244.0.0/33']}}, 'podCIDRs'),
            ({'proxy': {'resources': {'limits': {'cpu': 0.5}}}}, 'cpu'),
            ({'proxy': {'resources': {'limits': {'memory': '-1Gi'}}}}, 'memory'),
            ({'injector': {'failurePolicy': 'fail'}}, 'failurePolicy'),
            ({'controlPlane': {'replicas': 0}}, 'replicas'),
            ({'images': {'pullPolicy': 'Sometimes'}}, 'pullPolicy'),
        ]:
            with self.subTest(values=values):
                self.assertIn(where, self.refused(values))

    def test_schema_and_values_yaml_list_the_same_keys(self):
        with open(os.path.join(chart.CHART, 'values.schema.json')) as f:
            schema = json.load(f)
        with open(os.path.join(chart.CHART, 'values.yaml')) as f:
            values = yaml.safe_load(f)

        def schema_keys(node, prefix=''):
            node = resolve(schema, node)
            if node.get('type') != 'object' or 'properties' not in node:
                return {prefix}
            if node.get('additionalProperties') is not False:
                raise AssertionError(f'{prefix or "the root"} accepts unknown keys')
            if node['properties'].keys() >= {'cpu', 'memory'}:  # a quantities map: any subset
                return {prefix}
            return set().union(*(schema_keys(v, f'{prefix}.{k}'.lstrip('.')) for k, v in node['properties'].items()))

        def value_keys(node, prefix=''):
            if isinstance(node, dict) and not (node.keys() & {'cpu', 'memory'}):
                return set().union(*(value_keys(v, f'{prefix}.{k}'.lstrip('.')) for k, v in node.items()))
            return {prefix}

        self.assertEqual(schema_keys(schema), value_keys(values))


def resolve(schema, node):
    while '$ref' in node:
        node = schema['definitions'][node['$ref'].rsplit('/', 1)[1]]
    return node


class ObjectsTest(unittest.TestCase):
    def kinds(self, values):
        return sorted((d['kind'], d['metadata']['name']) for d in documents(values))

    def test_default_install_renders_the_control_plane_webhooks_rbac_and_istio_crds(self):
        self.assertEqual(self.kinds(None), sorted([
            ('ClusterRole', 'sinew-control-plane'),
            ('ClusterRoleBinding', 'sinew-control-plane'),
            ('ConfigMap', 'sinew-injector'),
            ('CustomResourceDefinition', 'authorizationpolicies.security.istio.io'),
            ('CustomResourceDefinition', 'destinationrules.networking.istio.io'),
            ('CustomResourceDefinition', 'peerauthentications.security.istio.io'),
            ('CustomResourceDefinition', 'telemetries.telemetry.istio.io'),
            ('CustomResourceDefinition', 'virtualservices.networking.istio.io'),
            ('Deployment', 'sinew-control-plane'),
            ('MutatingWebhookConfiguration', 'sinew-injector'),
            ('PodDisruptionBudget', 'sinew-control-plane'),
            ('Role', 'sinew-control-plane'),
            ('RoleBinding', 'sinew-control-plane'),
            ('Service', 'sinew-control-plane'),
            ('ServiceAccount', 'sinew-control-plane'),
            ('ValidatingWebhookConfiguration', 'sinew-validator'),
        ]))

    def test_custom_values_add_jaeger_and_drop_the_istio_crds_and_the_single_replica_pdb(self):
        default, custom = set(self.kinds(None)), set(self.kinds(CUSTOM))
        self.assertEqual(custom - default, {('Deployment', 'sinew-jaeger'), ('Service', 'sinew-jaeger'),
                                            ('ConfigMap', 'sinew-grafana-dashboards')})
        self.assertEqual(default - custom, {
            ('CustomResourceDefinition', 'authorizationpolicies.security.istio.io'),
            ('CustomResourceDefinition', 'peerauthentications.security.istio.io'),
            ('CustomResourceDefinition', 'destinationrules.networking.istio.io'),
            ('CustomResourceDefinition', 'telemetries.telemetry.istio.io'),
            ('CustomResourceDefinition', 'virtualservices.networking.istio.io'),
            ('PodDisruptionBudget', 'sinew-control-plane'),
        })

    def test_namespaced_objects_are_in_the_release_namespace(self):
        for doc in documents(CUSTOM) + documents(None):
            if doc['kind'] in ('ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition',
                               'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'):
                self.assertNotIn('namespace', doc['metadata'], doc['kind'])
            else:
                self.assertEqual(doc['metadata']['namespace'], NAMESPACE, doc['kind'])

    def test_another_namespace_is_named_wherever_the_mesh_refers_to_itself(self):
        # The control plane's identity follows --namespace, so proxies must be told that one.
        docs = [d for path, text in render(namespace='mesh').items() if not path.endswith('NOTES.txt')
                for d in yaml.load_all(text, Loader=chart.SafeLoader) if d]
        config = next(d for d in docs if d['kind'] == 'ConfigMap' and d['metadata']['name'] == 'sinew-injector')
        injector = yaml.safe_load(config['data']['config.yaml'])
        self.assertEqual(injector['controlPlaneAddress'], 'sinew-control-plane.mesh.svc:15012')
        self.assertEqual(injector['controlPlaneIdentity'], 'spiffe://cluster.local/ns/mesh/sa/sinew-control-plane')
        deployment = next(d for d in docs if d['kind'] == 'Deployment' and d['metadata']['name'] == 'sinew-control-plane')
        args = deployment['spec']['template']['spec']['containers'][0]['args']
        self.assertIn('--namespace=mesh', args)
        self.assertIn('--root-namespace=mesh', args)
        for doc in docs:
            if 'namespace' in doc['metadata']:
                self.assertEqual(doc['metadata']['namespace'], 'mesh', doc['kind'])


class ControlPlaneTest(unittest.TestCase):
    def deployment(self, values=None):
        return find(documents(values), 'Deployment', 'sinew-control-plane')

    def container(self, values=None):
        [container] = self.deployment(values)['spec']['template']['spec']['containers']
        return container

    def test_two_replicas_spread_over_nodes_with_a_disruption_budget_that_keeps_one(self):
        docs = documents()
        deployment = find(docs, 'Deployment', 'sinew-control-plane')
        self.assertEqual(deployment['spec']['replicas'], 2)
        self.assertEqual(deployment['spec']['strategy']['rollingUpdate']['maxUnavailable'], 0)
        selector = deployment['spec']['selector']['matchLabels']
        pod_labels = deployment['spec']['template']['metadata']['labels']
        self.assertLessEqual(selector.items(), pod_labels.items())
        [term] = deployment['spec']['template']['spec']['affinity']['podAntiAffinity'][
            'preferredDuringSchedulingIgnoredDuringExecution']
        self.assertEqual(term['podAffinityTerm']['topologyKey'], 'kubernetes.io/hostname')
        self.assertEqual(term['podAffinityTerm']['labelSelector']['matchLabels'], selector)
        pdb = find(docs, 'PodDisruptionBudget', 'sinew-control-plane')
        self.assertEqual(pdb['spec']['minAvailable'], 1)
        self.assertEqual(pdb['spec']['selector']['matchLabels'], selector)

    def test_the_control_plane_is_never_injected(self):
        labels = self.deployment()['spec']['template']['metadata']['labels']
        self.assertEqual(labels['sinew.dev/inject'], 'false')

    def test_runs_as_non_root_with_a_read_only_root_and_no_capabilities(self):
        pod = self.deployment()['spec']['template']['spec']
        self.assertTrue(pod['securityContext']['runAsNonRoot'])
        self.assertNotEqual(pod['securityContext']['runAsUser'], 0)
        self.assertEqual(pod['securityContext']['seccompProfile'], {'type': 'RuntimeDefault'})
        context = pod['containers'][0]['securityContext']
        self.assertEqual(context, {'allowPrivilegeEscalation': False, 'readOnlyRootFilesystem': True,
                                   'capabilities': {'drop': ['ALL']}})

    def test_probes_ask_the_monitoring_port_for_ready(self):
        container = self.container()
        ports = {p['name']: p['containerPort'] for p in container['ports']}
        self.assertEqual(sorted(ports.values()), [15012, 15014, 15017])
        for probe in ('startupProbe', 'readinessProbe', 'livenessProbe'):
            get = container[probe]['httpGet']
            self.assertEqual((get['path'], ports[get['port']]), ('/ready', 15014), probe)
        startup = container['startupProbe']
        # The control plane gives up after 60 s of listing: the startup probe waits longer.
        self.assertGreater(startup['periodSeconds'] * startup['failureThreshold'], 60)

    def test_arguments_follow_the_values(self):
        args = self.container(CUSTOM)['args']
        self.assertEqual(args[0], 'serve')
        self.assertEqual(args[1:], [
            f'--namespace={NAMESPACE}',
            f'--root-namespace={NAMESPACE}',
            '--trust-domain=example.org',
            '--log-level=info,sinew_control_plane::cluster=debug',
            f'--injector-config={INJECTOR_CONFIG_PATH}',
            '--service-cidr=10.96.0.0/12',
            '--service-cidr=fd00:10:96::/112',
            '--pod-cidr=10.244.0.0/16',
            f'--otlp-endpoint=http://sinew-jaeger.{NAMESPACE}.svc:4317',
            '--trace-sampling=12.5',
            '--access-log',
            '--access-log-encoding=json',
        ])
        defaults = self.container()['args']
        self.assertNotIn('--service-cidr', ' '.join(defaults))
        # No endpoint and no mesh-wide access log unless asked for; sampling as the proxies get it.
        self.assertEqual([a for a in defaults if 'otlp' in a or 'access' in a or 'sampling' in a],
                         ['--trace-sampling=1', '--access-log-encoding=text'])
        explicit = self.container(EXPLICIT_TRACING)['args']
        self.assertIn('--otlp-endpoint=http://otel-collector.observability.svc:4317', explicit)
        self.assertIn('--trace-sampling=0', explicit)

    def test_the_injector_config_file_is_the_mounted_config_map_key(self):
        deployment = self.deployment()
        container = deployment['spec']['template']['spec']['containers'][0]
        [flag] = [a for a in container['args'] if a.startswith('--injector-config=')]
        path = flag.split('=', 1)[1]
        [mount] = [m for m in container['volumeMounts'] if path.startswith(m['mountPath'] + '/')]
        [volume] = [v for v in deployment['spec']['template']['spec']['volumes'] if v['name'] == mount['name']]
        self.assertEqual(volume['configMap']['name'], 'sinew-injector')
        config_map = find(documents(), 'ConfigMap', 'sinew-injector')
        self.assertIn(os.path.relpath(path, mount['mountPath']), config_map['data'])

    def test_a_changed_injector_config_rolls_the_replicas(self):
        checksum = lambda values: self.deployment(values)['spec']['template']['metadata']['annotations'][
            'checksum/injector-config']
        self.assertNotEqual(checksum(None), checksum({'proxy': {'logLevel': 'debug'}}))
        self.assertEqual(checksum(None), checksum({'controlPlane': {'logLevel': 'debug'}}))

    def test_the_leader_election_identity_comes_from_the_pod_name(self):
        env = {e['name']: e for e in self.container()['env']}
        self.assertEqual(env['POD_NAME']['valueFrom']['fieldRef']['fieldPath'], 'metadata.name')

    def test_resources_follow_the_values_as_strings(self):
        self.assertEqual(self.container(CUSTOM)['resources'], {
            'requests': {'cpu': '250m', 'memory': '256Mi'}, 'limits': {'cpu': '4', 'memory': '2Gi'}})

    def test_the_service_exposes_grpc_monitoring_and_webhook_ports(self):
        service = find(documents(), 'Service', 'sinew-control-plane')
        container = self.container()
        container_ports = {p['name']: p['containerPort'] for p in container['ports']}
        ports = {p['port']: container_ports[p['targetPort']] for p in service['spec']['ports']}
        self.assertEqual(ports, {15012: 15012, 15014: 15014, 15017: 15017})
        labels = self.deployment()['spec']['template']['metadata']['labels']
        self.assertLessEqual(service['spec']['selector'].items(), labels.items())


class ImagesTest(unittest.TestCase):
    def test_tags_default_to_the_app_version(self):
        with helm.Chart.load(chart.CHART) as c:
            app_version = c.metadata['appVersion']
        deployment = find(documents(), 'Deployment', 'sinew-control-plane')
        image = deployment['spec']['template']['spec']['containers'][0]['image']
        self.assertEqual(image, f'ghcr.io/sinew-mesh/sinew-control-plane:{app_version}')
        self.assertEqual(injector_config()['proxyImage'], f'ghcr.io/sinew-mesh/sinew-proxy:{app_version}')

    def test_custom_images_and_pull_policy_are_used(self):
        docs = documents(CUSTOM)
        control_plane = find(docs, 'Deployment', 'sinew-control-plane')['spec']['template']['spec']['containers'][0]
        self.assertEqual(control_plane['image'], 'registry.example.com:5000/mesh/cp:dev_build')
        self.assertEqual(control_plane['imagePullPolicy'], 'Always')
        config = injector_config(CUSTOM)
        self.assertEqual(config['proxyImage'], 'registry.example.com:5000/mesh/proxy:9.9.9-rc.1')
        self.assertEqual(config['imagePullPolicy'], 'Always')
        jaeger = find(docs, 'Deployment', 'sinew-jaeger')['spec']['template']['spec']['containers'][0]
        self.assertEqual(jaeger['image'], 'jaegertracing/all-in-one:1.75.0')

    @staticmethod
    def dockerfile_stages():
        """Stage name → (base image, instruction lines) of the Dockerfile."""
        with open(os.path.join(chart.REPO, 'Dockerfile')) as f:
            lines = [l.rstrip() for l in f if l.strip() and not l.startswith('#')]
        stages, current = {}, None
        for line in lines:
            if line.startswith('FROM '):
                base, _, name = line[5:].partition(' AS ')
                current = stages[name] = (base, [])
            elif current is not None:
                current[1].append(line)
        return stages

    def test_the_dockerfile_builds_the_images_the_chart_names(self):
        stages = self.dockerfile_stages()
        values = chart.merged_values()
        for key, target in [('proxy', 'proxy'), ('controlPlane', 'control-plane')]:
            repository = values['images'][key]['repository']
            self.assertTrue(repository.endswith('/sinew-' + target), repository)
            binary = f'/usr/local/bin/sinew-{target}'
            body = ' '.join(stages[target][1])
            self.assertIn(f'--from=build-{target} /src/target/release/sinew-{target} {binary}', body)
            self.assertIn(f'ENTRYPOINT ["{binary}"]', body)

    def test_images_run_as_non_root_and_the_proxy_as_1337_with_iptables(self):
        stages = self.dockerfile_stages()
        for target in ('proxy', 'control-plane', 'sinewctl'):
            users = [l for l in stages[target][1] if l.startswith('USER ')]
            self.assertEqual(len(users), 1, target)
            self.assertNotIn(users[0].split()[1].split(':')[0], ('0', 'root'), target)
        self.assertIn('USER 1337:1337', stages['proxy'][1])
        self.assertIn('iptables', ' '.join(stages['proxy'][1]))


class InjectorConfigTest(unittest.TestCase):
    def test_default_values_give_exactly_the_contract_defaults(self):
        self.assertEqual(injector_config(), CONTRACT_DEFAULTS)

    def test_custom_values_reach_every_field_and_no_other_field_appears(self):
        config = injector_config(CUSTOM)
        self.assertEqual(config.keys(), CONTRACT_DEFAULTS.keys())
        self.assertEqual(config, {
            'proxyImage': 'registry.example.com:5000/mesh/proxy:9.9.9-rc.1',
            'imagePullPolicy': 'Always',
            'controlPlaneAddress': 'sinew-control-plane.sinew-system.svc:15012',
            'controlPlaneIdentity': 'spiffe://example.org/ns/sinew-system/sa/sinew-control-plane',
            'trustDomain': 'example.org',
            'nativeSidecar': False,
            'logLevel': 'debug',
            'proxyResources': {'requests': {'cpu': '50m', 'memory': '64Mi'}, 'limits': {'cpu': '1', 'memory': '512Mi'}},
            'initResources': {'requests': {'cpu': '20m', 'memory': '16Mi', 'ephemeral-storage': '1Mi'},
                              'limits': {'cpu': '200m', 'memory': '64Mi'}},
            'tracing': {'endpoint': 'http://sinew-jaeger.sinew-system.svc:4317', 'sampling': 12.5},
            'meshAddressRanges': ['10.96.0.0/12', 'fd00:10:96::/112', '10.244.0.0/16'],
        })

    def test_an_explicit_tracing_endpoint_wins_over_jaeger(self):
        self.assertEqual(injector_config(EXPLICIT_TRACING)['tracing'],
                         {'endpoint': 'http://otel-collector.observability.svc:4317', 'sampling': 0})

    def test_the_jaeger_endpoint_is_the_jaeger_service_otlp_port(self):
        endpoint = injector_config(CUSTOM)['tracing']['endpoint']
        service = find(documents(CUSTOM), 'Service', 'sinew-jaeger')
        host, port = re.fullmatch(r'http://([^:]+):(\d+)', endpoint).groups()
        self.assertEqual(host, f'{service["metadata"]["name"]}.{service["metadata"]["namespace"]}.svc')
        [otlp] = [p for p in service['spec']['ports'] if p['port'] == int(port)]
        self.assertEqual((otlp['name'], otlp['port']), ('grpc-otlp', 4317))

    def test_the_control_plane_address_is_its_service_grpc_port(self):
        config = injector_config()
        service = find(documents(), 'Service', 'sinew-control-plane')
        host, port = config['controlPlaneAddress'].rsplit(':', 1)
        self.assertEqual(host, f'{service["metadata"]["name"]}.{service["metadata"]["namespace"]}.svc')
        self.assertIn(int(port), [p['port'] for p in service['spec']['ports'] if p['name'] == 'grpc'])
        account = find(documents(), 'ServiceAccount', 'sinew-control-plane')['metadata']
        self.assertTrue(config['controlPlaneIdentity'].endswith(f'/ns/{account["namespace"]}/sa/{account["name"]}'))


class WebhooksTest(unittest.TestCase):
    def webhook(self, kind, name, values=None):
        [hook] = find(documents(values), kind, name)['webhooks']
        return hook

    def test_neither_webhook_renders_a_ca_bundle_for_helm_to_own(self):
        for kind, name in [('MutatingWebhookConfiguration', 'sinew-injector'),
                           ('ValidatingWebhookConfiguration', 'sinew-validator')]:
            for values in (None, CUSTOM):
                self.assertNotIn('caBundle', self.webhook(kind, name, values)['clientConfig'])

    def test_both_call_the_control_plane_service_webhook_port(self):
        service = find(documents(), 'Service', 'sinew-control-plane')
        webhook_ports = [p['port'] for p in service['spec']['ports'] if p['name'] == 'https-webhook']
        for kind, name, path in [('MutatingWebhookConfiguration', 'sinew-injector', '/inject'),
                                 ('ValidatingWebhookConfiguration', 'sinew-validator', '/validate')]:
            target = self.webhook(kind, name)['clientConfig']['service']
            self.assertEqual(target, {'name': service['metadata']['name'], 'namespace': NAMESPACE,
                                      'path': path, 'port': webhook_ports[0]})

    def test_the_injector_sees_pod_creation_only_without_side_effects_or_reinvocation(self):
        hook = self.webhook('MutatingWebhookConfiguration', 'sinew-injector')
        self.assertEqual(hook['rules'], [{'apiGroups': [''], 'apiVersions': ['v1'], 'resources': ['pods'],
                                          'operations': ['CREATE'], 'scope': 'Namespaced'}])
        self.assertEqual((hook['sideEffects'], hook['reinvocationPolicy'], hook['admissionReviewVersions']),
                         ('None', 'Never', ['v1']))
        self.assertEqual(hook['failurePolicy'], 'Fail')
        self.assertEqual(self.webhook('MutatingWebhookConfiguration', 'sinew-injector', CUSTOM)['failurePolicy'],
                         'Ignore')
        self.assertLessEqual(hook['timeoutSeconds'], 10)

    def test_the_validator_covers_every_served_version_of_both_groups(self):
        hook = self.webhook('ValidatingWebhookConfiguration', 'sinew-validator')
        covered = {(g, v, r) for rule in hook['rules'] for g in rule['apiGroups']
                   for v in rule['apiVersions'] for r in rule['resources']}
        crds = list(chart.crd_files().values()) + list(chart.istio_crd_files().values())
        served = {(c['spec']['group'], v['name'], c['spec']['names']['plural'])
                  for c in crds for v in c['spec']['versions'] if v['served']}
        self.assertEqual(covered, served)
        for rule in hook['rules']:
            self.assertEqual(rule['operations'], ['CREATE', 'UPDATE'])
        self.assertEqual((hook['failurePolicy'], hook['sideEffects']), ('Ignore', 'None'))


class IstioCrdsTest(unittest.TestCase):
    def test_rendered_istio_crds_are_the_generated_files_kept_on_uninstall(self):
        rendered = {d['metadata']['name']: d for d in documents() if d['kind'] == 'CustomResourceDefinition'}
        files = {d['metadata']['name']: d for d in chart.istio_crd_files().values()}
        self.assertEqual(rendered.keys(), files.keys())
        for name, doc in rendered.items():
            meta = doc['metadata']
            self.assertEqual(meta.pop('annotations'), {'helm.sh/resource-policy': 'keep'})
            self.assertEqual(meta.pop('labels')['app.kubernetes.io/part-of'], 'sinew')
            self.assertEqual(doc, files[name], f'{name} changed in rendering')

    def test_only_sinew_dev_crds_are_installed_unconditionally(self):
        groups = {d['spec']['group'] for d in chart.crd_files().values()}
        self.assertEqual(groups, {'sinew.dev'})
        self.assertEqual({d['spec']['group'] for d in chart.istio_crd_files().values()},
                         {'networking.istio.io', 'telemetry.istio.io', 'security.istio.io'})


class RbacTest(unittest.TestCase):
    """The ClusterRole and Role grant exactly what docs/kubernetes.md's RBAC tables list."""

    @staticmethod
    def grants(rules):
        out = set()
        for rule in rules:
            for group in rule['apiGroups']:
                for resource in rule['resources']:
                    for name in rule.get('resourceNames', [None]):
                        for verb in rule['verbs']:
                            out.add((group, resource, name, verb))
        return out

    @staticmethod
    def documented():
        with open(os.path.join(chart.REPO, 'docs', 'kubernetes.md')) as f:
            text = f.read()
        section = text.split('\n## RBAC\n', 1)[1].split('\n## ', 1)[0]
        tables, current = {}, None
        for line in section.splitlines():
            if line.startswith('Namespaced Role'):
                current = tables.setdefault('Role', set())
            elif line.startswith('ClusterRole'):
                current = tables.setdefault('ClusterRole', set())
            elif line.startswith('| `') and current is not None:
                groups_cell, resources_cell, verbs_cell = [c.strip() for c in line.strip('|').split('|')][:3]
                # The core group is written `""`.
                groups = ['' if g == '""' else g for g in re.findall(r'`([^`]*)`', groups_cell)]
                resources_part, _, names_part = resources_cell.partition('resourceNames')
                resources = [r.strip() for r in resources_part.split(',') if r.strip()]
                names = re.findall(r'`([^`]*)`', names_part) or [None]
                verbs = [v.strip() for v in verbs_cell.split(',')]
                current.update((g, r, n, v) for g in groups for r in resources for n in names for v in verbs)
        return tables

    def test_roles_grant_exactly_the_documented_permissions(self):
        documented = self.documented()
        docs = documents()
        self.assertEqual(self.grants(find(docs, 'ClusterRole', 'sinew-control-plane')['rules']),
                         documented['ClusterRole'])
        self.assertEqual(self.grants(find(docs, 'Role', 'sinew-control-plane')['rules']), documented['Role'])
        self.assertGreater(len(documented['ClusterRole']), 20)

    def test_bindings_give_the_roles_to_the_control_plane_account(self):
        docs = documents()
        account = find(docs, 'ServiceAccount', 'sinew-control-plane')['metadata']
        deployment = find(docs, 'Deployment', 'sinew-control-plane')
        self.assertEqual(deployment['spec']['template']['spec']['serviceAccountName'], account['name'])
        for kind, role in [('ClusterRoleBinding', 'ClusterRole'), ('RoleBinding', 'Role')]:
            binding = find(docs, kind, 'sinew-control-plane')
            self.assertEqual(binding['roleRef'], {'apiGroup': 'rbac.authorization.k8s.io', 'kind': role,
                                                  'name': 'sinew-control-plane'})
            self.assertEqual(binding['subjects'], [{'kind': 'ServiceAccount', 'name': account['name'],
                                                    'namespace': account['namespace']}])


class JaegerTest(unittest.TestCase):
    def test_jaeger_serves_otlp_and_the_ui_and_is_never_injected(self):
        docs = documents(CUSTOM)
        deployment = find(docs, 'Deployment', 'sinew-jaeger')
        pod = deployment['spec']['template']
        self.assertEqual(pod['metadata']['labels']['sinew.dev/inject'], 'false')
        [container] = pod['spec']['containers']
        container_ports = {p['name']: p['containerPort'] for p in container['ports']}
        service = find(docs, 'Service', 'sinew-jaeger')
        ports = {p['port']: container_ports[p['targetPort']] for p in service['spec']['ports']}
        self.assertEqual(ports, {4317: 4317, 4318: 4318, 16686: 16686})
        self.assertLessEqual(service['spec']['selector'].items(), pod['metadata']['labels'].items())
        self.assertEqual(container['resources'], {'limits': {'memory': '512Mi'}, 'requests': {'cpu': '50m', 'memory': '128Mi'}})

    def test_notes_say_how_to_open_jaeger_only_when_it_is_installed(self):
        notes = lambda values: render(values)['sinew/templates/NOTES.txt']
        self.assertIn('port-forward service/sinew-jaeger 16686', notes(CUSTOM))
        self.assertNotIn('sinew-jaeger', notes(None))
        for text in (notes(None), notes(CUSTOM)):
            self.assertIn('kubectl label namespace NAMESPACE sinew-injection=enabled', text)
            self.assertIn('rollout restart', text)


class DocsTest(unittest.TestCase):
    def test_every_value_is_described_in_the_install_guide(self):
        with open(os.path.join(chart.REPO, 'docs', 'install.md')) as f:
            guide = f.read()
        with open(os.path.join(chart.CHART, 'values.yaml')) as f:
            values = yaml.safe_load(f)

        def leaves(node, prefix=''):
            # A resources value (requests and limits) is described as one.
            if isinstance(node, dict) and not prefix.endswith(('resources', 'Resources')):
                for k, v in node.items():
                    yield from leaves(v, f'{prefix}.{k}'.lstrip('.'))
            else:
                yield prefix

        missing = [key for key in leaves(values) if f'`{key}`' not in guide]
        self.assertEqual(missing, [])


if __name__ == '__main__':
    unittest.main(verbosity=1)
