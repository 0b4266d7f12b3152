#!/usr/bin/env python3
"""Tests of fake_apiserver.py over real HTTP (urllib): each starts the launcher as a child process,
as the Rust end-to-end tests do.

    target/py-venv/bin/python control-plane/tests/support/test_fake_apiserver.py   # scripts/test.sh runs it
"""

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fake_apiserver.py')
ISTIO = 'networking.istio.io'


def crd(group, plural, kind, versions, status=True, schema=None):
    return {
        'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
        'metadata': {'name': f'{plural}.{group}'},
        'spec': {'group': group, 'scope': 'Namespaced',
                 'names': {'plural': plural, 'singular': kind.lower(), 'kind': kind, 'listKind': f'{kind}List'},
                 'versions': [{'name': v, 'served': True, 'storage': i == 0,
                               'schema': {'openAPIV3Schema': schema or {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}},
                               **({'subresources': {'status': {}}} if status else {})}
                              for i, v in enumerate(versions)]}}


def config_map(name, data=None, labels=None):
    meta = {'name': name}
    if labels:
        meta['labels'] = labels
    return {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': meta, 'data': data or {}}


class FakeApiServer:
    """One launcher process; `restart()` keeps the port and the state file."""

    def __init__(self, tmp, seed=None, extra=()):
        self.tmp = tmp
        self.state = os.path.join(tmp, 'state.json')
        self.tokens = os.path.join(tmp, 'tokens.json')
        self.seed = seed
        self.extra = list(extra)
        self.port = 0
        self.proc = None
        self.start()

    def start(self):
        args = [sys.executable, LAUNCHER, '--host', '127.0.0.1', '--port', str(self.port),
                '--state', self.state, '--tokens', self.tokens, *self.extra]
        if self.seed is not None:
            args += ['--seed', self.seed]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        assert ready, 'no FAKE_APISERVER_READY within 20 s'
        line = self.proc.stdout.readline()
        assert line.startswith('FAKE_APISERVER_READY http://127.0.0.1:'), line
        self.url = line.split()[1]
        self.port = int(self.url.rsplit(':', 1)[1])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()

    def restart(self):
        self.stop()
        self.start()

    def call(self, method, path, body=None, ctype='application/json'):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={'Content-Type': ctype, 'Authorization': 'Bearer test'})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def watch(self, path, count, timeout=5, established=None):
        """The first `count` events of a watch (fewer if the server ends it first). HTTP/1.0 on a
        plain socket: the body is then read line by line as it arrives (urllib's chunked reader
        waits for more than a line). `established` runs once the server has answered the watch
        (its headers are in), before any event is read."""
        sep = '&' if '?' in path else '?'
        return self.stream(f'{path}{sep}watch=true&timeoutSeconds={timeout}', count, timeout + 5, established)

    def stream(self, path, count, timeout, established=None):
        """Up to `count` events from a watch request sent as is."""
        host, port = self.url.removeprefix('http://').split(':')
        events = []
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(f'GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n'.encode())
            reader = sock.makefile('rb')
            status = reader.readline().split()[1]
            assert status == b'200', status
            while reader.readline() not in (b'\r\n', b''):
                pass
            if established:
                established()
            while len(events) < count:
                line = reader.readline()
                if not line:
                    break
                events.append(json.loads(line))
        return events


class FakeApiServerTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='fake-apiserver-')
        self.server = None

    def tearDown(self):
        if self.server is not None and self.server.proc.poll() is None:
            self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, seed=None, extra=()):
        seed_path = None
        if seed is not None:
            seed_path = os.path.join(self.tmp, 'seed.json')
            with open(seed_path, 'w') as f:
                json.dump(seed, f)
        self.server = FakeApiServer(self.tmp, seed_path, extra)
        return self.server

    def ok(self, expected, result):
        status, body = result
        self.assertEqual(status, expected, body)
        return body

    # --- lists, namespaces, object metadata ---

    def test_namespaces_list_has_the_seeded_and_initial_namespaces(self):
        s = self.start(seed=[{'apiVersion': 'v1', 'kind': 'Namespace',
                              'metadata': {'name': 'shop', 'labels': {'sinew-injection': 'enabled'}}}])
        body = self.ok(200, s.call('GET', '/api/v1/namespaces'))
        names = [ns['metadata']['name'] for ns in body['items']]
        self.assertEqual(names, ['default', 'kube-node-lease', 'kube-public', 'kube-system', 'shop'])
        self.assertEqual(body['kind'], 'NamespaceList')
        shop = self.ok(200, s.call('GET', '/api/v1/namespaces/shop'))
        self.assertEqual(shop['metadata']['labels'], {'sinew-injection': 'enabled'})
        selected = self.ok(200, s.call('GET', '/api/v1/namespaces?labelSelector=sinew-injection%3Denabled'))
        self.assertEqual([ns['metadata']['name'] for ns in selected['items']], ['shop'])

    def test_lists_and_objects_carry_increasing_resource_versions_uid_and_timestamps(self):
        s = self.start()
        before = int(self.ok(200, s.call('GET', '/api/v1/namespaces/default/configmaps'))['metadata']['resourceVersion'])
        a = self.ok(201, s.call('POST', '/api/v1/namespaces/default/configmaps', config_map('a')))
        b = self.ok(201, s.call('POST', '/api/v1/namespaces/default/configmaps', config_map('b')))
        after = int(self.ok(200, s.call('GET', '/api/v1/namespaces/default/configmaps'))['metadata']['resourceVersion'])
        rv_a, rv_b = int(a['metadata']['resourceVersion']), int(b['metadata']['resourceVersion'])
        self.assertTrue(before < rv_a < rv_b <= after, (before, rv_a, rv_b, after))
        self.assertNotEqual(a['metadata']['uid'], b['metadata']['uid'])
        self.assertRegex(a['metadata']['creationTimestamp'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')
        self.assertEqual(a['metadata']['namespace'], 'default')
        got = self.ok(200, s.call('GET', '/api/v1/namespaces/default/configmaps/a'))
        self.assertEqual(got, a)

    def test_a_custom_resource_has_a_generation_bumped_by_spec_changes_only(self):
        s = self.start(seed=[crd('sinew.dev', 'destinationrules', 'DestinationRule', ['v1alpha1'])])
        path = '/apis/sinew.dev/v1alpha1/namespaces/default/destinationrules'
        dr = self.ok(201, s.call('POST', path, {'apiVersion': 'sinew.dev/v1alpha1', 'kind': 'DestinationRule',
                                                'metadata': {'name': 'r'}, 'spec': {'host': 'a'}}))
        self.assertEqual(dr['metadata']['generation'], 1)
        merge = 'application/merge-patch+json'
        labelled = self.ok(200, s.call('PATCH', f'{path}/r', {'metadata': {'labels': {'x': 'y'}}}, merge))
        self.assertEqual(labelled['metadata']['generation'], 1)
        changed = self.ok(200, s.call('PATCH', f'{path}/r', {'spec': {'host': 'b'}}, merge))
        self.assertEqual(changed['metadata']['generation'], 2)
        status = self.ok(200, s.call('PATCH', f'{path}/r/status', {'status': {'conditions': [{'type': 'Accepted', 'status': 'False'}]}}, merge))
        self.assertEqual(status['metadata']['generation'], 2)
        self.assertEqual(status['status']['conditions'][0]['status'], 'False')
        self.assertEqual(status['spec'], {'host': 'b'})

    def test_status_and_main_endpoints_each_write_only_their_part(self):
        s = self.start(seed=[crd('sinew.dev', 'destinationrules', 'DestinationRule', ['v1alpha1'])])
        path = '/apis/sinew.dev/v1alpha1/namespaces/default/destinationrules'
        self.ok(201, s.call('POST', path, {'apiVersion': 'sinew.dev/v1alpha1', 'kind': 'DestinationRule',
                                           'metadata': {'name': 'r'}, 'spec': {'host': 'a'}}))
        merge = 'application/merge-patch+json'
        self.ok(200, s.call('PATCH', f'{path}/r/status', {'spec': {'host': 'ignored'}, 'status': {'s': 1}}, merge))
        self.ok(200, s.call('PATCH', f'{path}/r', {'spec': {'host': 'b'}, 'status': {'s': 2}}, merge))
        got = self.ok(200, s.call('GET', f'{path}/r'))
        self.assertEqual((got['spec'], got['status']), ({'host': 'b'}, {'s': 1}))

    def test_an_update_that_changes_nothing_keeps_the_resource_version(self):
        s = self.start()
        path = '/api/v1/namespaces/default/configmaps'
        cm = self.ok(201, s.call('POST', path, config_map('a', {'k': 'v'})))
        same = self.ok(200, s.call('PATCH', f'{path}/a', {'data': {'k': 'v'}}, 'application/merge-patch+json'))
        self.assertEqual(same['metadata']['resourceVersion'], cm['metadata']['resourceVersion'])

    # --- watches ---

    def test_a_watch_from_a_resource_version_streams_only_newer_events(self):
        s = self.start()
        path = '/api/v1/namespaces/default/configmaps'
        a = self.ok(201, s.call('POST', path, config_map('a')))
        listed = self.ok(200, s.call('GET', path))['metadata']['resourceVersion']
        self.ok(201, s.call('POST', path, config_map('b')))
        self.ok(200, s.call('PATCH', f'{path}/b', {'data': {'k': 'v'}}, 'application/merge-patch+json'))
        self.ok(200, s.call('DELETE', f'{path}/a'))
        events = s.watch(f'{path}?resourceVersion={listed}', 3)
        self.assertEqual([(e['type'], e['object']['metadata']['name']) for e in events],
                         [('ADDED', 'b'), ('MODIFIED', 'b'), ('DELETED', 'a')])
        rvs = [int(e['object']['metadata']['resourceVersion']) for e in events]
        self.assertEqual(rvs, sorted(rvs))
        self.assertGreater(rvs[0], int(listed))
        self.assertGreater(rvs[2], int(a['metadata']['resourceVersion']), 'DELETED carries a new RV')
        self.assertEqual(events[1]['object']['data'], {'k': 'v'})

    def test_a_watch_without_resource_version_starts_with_every_object(self):
        s = self.start()
        path = '/api/v1/namespaces/default/configmaps'
        self.ok(201, s.call('POST', path, config_map('a')))
        self.ok(201, s.call('POST', path, config_map('b')))
        events = s.watch(path, 2)
        self.assertEqual([(e['type'], e['object']['metadata']['name']) for e in events], [('ADDED', 'a'), ('ADDED', 'b')])

    def test_a_watch_is_told_when_an_object_leaves_its_label_selection(self):
        s = self.start()
        path = '/api/v1/namespaces/default/configmaps'
        self.ok(201, s.call('POST', path, config_map('a', labels={'app': 'x'})))
        listed = self.ok(200, s.call('GET', f'{path}?labelSelector=app%3Dx'))
        self.assertEqual(len(listed['items']), 1)
        self.ok(201, s.call('POST', path, config_map('other', labels={'app': 'y'})))
        self.ok(200, s.call('PATCH', f'{path}/a', {'metadata': {'labels': {'app': 'z'}}}, 'application/merge-patch+json'))
        events = s.watch(f'{path}?labelSelector=app%3Dx&resourceVersion={listed["metadata"]["resourceVersion"]}', 1)
        self.assertEqual([(e['type'], e['object']['metadata']['name']) for e in events], [('DELETED', 'a')])

    def test_watches_that_allow_bookmarks_get_them_with_the_current_resource_version(self):
        s = self.start(extra=['--bookmark-seconds', '0.2'])
        path = '/api/v1/namespaces/default/configmaps'
        listed = self.ok(200, s.call('GET', path))['metadata']['resourceVersion']
        self.ok(201, s.call('POST', '/api/v1/namespaces/kube-system/configmaps', config_map('elsewhere')))
        events = s.watch(f'{path}?allowWatchBookmarks=true&resourceVersion={listed}', 1)
        self.assertEqual(events[0]['type'], 'BOOKMARK')
        self.assertGreater(int(events[0]['object']['metadata']['resourceVersion']), int(listed))

    def test_kube_rs_watcher_requests_list_watch_and_resume_without_missing_events(self):
        # The queries of kube-runtime's watcher (kube-core request.rs), leading `&` included.
        s = self.start(extra=['--bookmark-seconds', '0.3'])
        path = '/api/v1/services'
        svc = {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'reviews'}, 'spec': {'ports': [{'port': 80}]}}
        listed = self.ok(200, s.call('GET', f'{path}?&limit=500'))
        self.assertEqual(listed['kind'], 'ServiceList')
        rv = listed['metadata']['resourceVersion']
        self.ok(201, s.call('POST', '/api/v1/namespaces/default/services', svc))
        events = s.stream(f'{path}?&watch=true&timeoutSeconds=2&allowWatchBookmarks=true&resourceVersion={rv}', 100, 10)
        types = [e['type'] for e in events]
        self.assertEqual(types[0], 'ADDED', 'the change after the list comes first')
        self.assertEqual(types[-1], 'BOOKMARK', 'bookmarks keep coming until timeoutSeconds ends the stream')
        last = events[-1]['object']['metadata']['resourceVersion']
        self.ok(200, s.call('DELETE', '/api/v1/namespaces/default/services/reviews'))
        resumed = s.stream(f'{path}?&watch=true&timeoutSeconds=1&allowWatchBookmarks=true&resourceVersion={last}', 1, 10)
        self.assertEqual([(e['type'], e['object']['metadata']['name']) for e in resumed], [('DELETED', 'reviews')])

    def test_streaming_list_ends_its_initial_events_with_a_bookmark(self):
        s = self.start()
        path = '/api/v1/namespaces/default/configmaps'
        self.ok(201, s.call('POST', path, config_map('a')))
        events = s.watch(f'{path}?sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan', 2)
        self.assertEqual([e['type'] for e in events], ['ADDED', 'BOOKMARK'])
        self.assertEqual(events[1]['object']['metadata']['annotations'], {'k8s.io/initial-events-end': 'true'})

    def test_a_watch_from_before_a_restart_gets_410_and_resource_versions_keep_growing(self):
        s = self.start()
        path = '/api/v1/namespaces/default/configmaps'
        self.ok(201, s.call('POST', path, config_map('a')))
        listed = self.ok(200, s.call('GET', path))['metadata']['resourceVersion']
        s.restart()
        events = s.watch(f'{path}?resourceVersion={listed}', 2)
        self.assertEqual(len(events), 1, events)
        self.assertEqual(events[0]['type'], 'ERROR')
        self.assertEqual((events[0]['object']['code'], events[0]['object']['reason']), (410, 'Expired'))
        relisted = self.ok(200, s.call('GET', path))['metadata']['resourceVersion']
        self.assertGreater(int(relisted), int(listed))
        self.assertEqual(s.watch(f'{path}?resourceVersion={relisted}', 1, timeout=1), [])

    def test_a_watch_from_an_rv_older_than_the_history_gets_410(self):
        s = self.start(extra=['--history', '2'])
        path = '/api/v1/namespaces/default/configmaps'
        listed = self.ok(200, s.call('GET', path))['metadata']['resourceVersion']
        for name in 'abc':
            self.ok(201, s.call('POST', path, config_map(name)))
        events = s.watch(f'{path}?resourceVersion={listed}', 1)
        self.assertEqual((events[0]['type'], events[0]['object']['code']), ('ERROR', 410))

    # --- CRDs ---

    def test_a_crd_kind_is_404_until_its_crd_exists_and_again_after_it_is_deleted(self):
        s = self.start()
        dr_path = f'/apis/{ISTIO}/v1/namespaces/default/destinationrules'
        self.assertEqual(s.call('GET', f'/apis/{ISTIO}/v1/destinationrules'), (404, '404 page not found\n'))
        self.assertEqual(s.call('GET', f'/apis/{ISTIO}/v1')[0], 404)
        definition = crd(ISTIO, 'destinationrules', 'DestinationRule', ['v1', 'v1beta1'])
        created = self.ok(201, s.call('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', definition))
        self.assertIn('Established', [c['type'] for c in created['status']['conditions']])
        listed = self.ok(200, s.call('GET', f'/apis/{ISTIO}/v1/destinationrules'))
        self.assertEqual((listed['kind'], listed['items']), ('DestinationRuleList', []))
        self.assertEqual(s.call('GET', f'/apis/{ISTIO}/v1alpha3/destinationrules')[0], 404, 'v1alpha3 is not served')
        discovered = self.ok(200, s.call('GET', f'/apis/{ISTIO}/v1'))
        self.assertEqual([r['name'] for r in discovered['resources'] if '/' not in r['name']], ['destinationrules'])
        dr = self.ok(201, s.call('POST', dr_path, {'apiVersion': f'{ISTIO}/v1', 'kind': 'DestinationRule',
                                                    'metadata': {'name': 'r'}, 'spec': {'host': 'h'}}))
        # One object, served at each version.
        beta = self.ok(200, s.call('GET', f'/apis/{ISTIO}/v1beta1/namespaces/default/destinationrules/r'))
        self.assertEqual(beta['apiVersion'], f'{ISTIO}/v1beta1')
        self.assertEqual(beta['metadata']['uid'], dr['metadata']['uid'])
        listed_rv = self.ok(200, s.call('GET', f'/apis/{ISTIO}/v1/destinationrules'))['metadata']['resourceVersion']
        started = time.monotonic()
        crd_path = f'/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{definition["metadata"]["name"]}'
        # The CRD goes once the watch is open, so the watch must end with it.
        delete_crd = lambda: self.assertEqual(s.call('DELETE', crd_path)[0], 200)
        events = s.watch(f'/apis/{ISTIO}/v1/destinationrules?resourceVersion={listed_rv}', 2, timeout=30,
                         established=delete_crd)
        self.assertEqual([(e['type'], e['object']['metadata']['name']) for e in events], [('DELETED', 'r')])
        self.assertLess(time.monotonic() - started, 25, 'the watch ended with the CRD, not by timeoutSeconds')
        self.assertEqual(s.call('GET', f'/apis/{ISTIO}/v1/destinationrules')[0], 404)
        self.assertEqual(s.call('GET', f'/apis/{ISTIO}/v1')[0], 404)

    def test_a_seeded_crd_is_established_and_serves_its_kind(self):
        s = self.start(seed=[crd('sinew.dev', 'virtualservices', 'VirtualService', ['v1alpha1'])])
        got = self.ok(200, s.call('GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/virtualservices.sinew.dev'))
        self.assertIn({'type': 'Established', 'status': 'True'},
                      [{'type': c['type'], 'status': c['status']} for c in got['status']['conditions']])
        self.ok(200, s.call('GET', '/apis/sinew.dev/v1alpha1/virtualservices'))

    RULE_SCHEMA = {'type': 'object', 'properties': {
        'spec': {'type': 'object', 'required': ['host'], 'properties': {
            'host': {'type': 'string'},
            'mode': {'type': 'string', 'enum': ['A', 'B']},
            'port': {'x-kubernetes-int-or-string': True},
            'trafficPolicy': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}}},
        'status': {'type': 'object', 'properties': {'conditions': {'type': 'array', 'items': {
            'type': 'object', 'properties': {'type': {'type': 'string'}, 'status': {'type': 'string'}}}}}}}}

    def test_custom_resources_are_pruned_to_their_schema(self):
        s = self.start(seed=[crd('sinew.dev', 'destinationrules', 'DestinationRule', ['v1alpha1'], schema=self.RULE_SCHEMA)])
        path = '/apis/sinew.dev/v1alpha1/namespaces/default/destinationrules'
        created = self.ok(201, s.call('POST', path, {
            'apiVersion': 'sinew.dev/v1alpha1', 'kind': 'DestinationRule', 'metadata': {'name': 'r'},
            'spec': {'host': 'h', 'port': 'http', 'unknown': 1, 'mode': None, 'trafficPolicy': {'anything': {'x': 1}}}}))
        self.assertEqual(created['spec'], {'host': 'h', 'port': 'http', 'trafficPolicy': {'anything': {'x': 1}}})
        status = self.ok(200, s.call('PATCH', f'{path}/r/status', {'status': {'conditions': [
            {'type': 'Accepted', 'status': 'False', 'undeclared': 'x'}], 'other': 1}}, 'application/merge-patch+json'))
        self.assertEqual(status['status'], {'conditions': [{'type': 'Accepted', 'status': 'False'}]})

    def test_custom_resources_that_break_their_schema_are_422_invalid(self):
        s = self.start(seed=[crd('sinew.dev', 'destinationrules', 'DestinationRule', ['v1alpha1'], schema=self.RULE_SCHEMA)])
        path = '/apis/sinew.dev/v1alpha1/namespaces/default/destinationrules'
        rule = {'apiVersion': 'sinew.dev/v1alpha1', 'kind': 'DestinationRule', 'metadata': {'name': 'r'}}
        for spec, message in [
                ({'host': 5}, 'spec.host: Invalid value: "integer": spec.host in body must be of type string'),
                ({}, 'spec.host: Required value'),
                ({'host': 'h', 'mode': 'C'}, 'spec.mode: Unsupported value: "C": supported values: "A", "B"'),
                ({'host': 'h', 'port': True}, 'spec.port: Invalid value: "boolean"')]:
            status, body = s.call('POST', path, dict(rule, spec=spec))
            self.assertEqual((status, body['reason']), (422, 'Invalid'), spec)
            self.assertIn(message, body['message'])
        self.ok(201, s.call('POST', path, dict(rule, spec={'host': 'h'})))
        status, body = s.call('PATCH', f'{path}/r', {'spec': {'host': None}}, 'application/merge-patch+json')
        self.assertEqual((status, body['reason']), (422, 'Invalid'))
        self.assertIn('spec.host: Required value', body['message'])

    # --- writes ---

    def test_creating_an_existing_object_is_409_already_exists(self):
        s = self.start()
        path = '/api/v1/namespaces/default/secrets'
        secret = {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'sinew-ca'}, 'data': {}}
        self.ok(201, s.call('POST', path, secret))
        status, body = s.call('POST', path, secret)
        self.assertEqual(status, 409)
        self.assertEqual((body['kind'], body['reason'], body['code']), ('Status', 'AlreadyExists', 409))
        self.assertEqual(body['details']['name'], 'sinew-ca')

    def test_names_the_real_server_refuses_are_422_invalid(self):
        s = self.start()
        for path, name in [('/api/v1/namespaces/default/configmaps', 'Upper'),
                           ('/api/v1/namespaces/default/services', 'a.b'),
                           ('/api/v1/namespaces', 'x' * 64)]:
            status, body = s.call('POST', path, {'metadata': {'name': name}})
            self.assertEqual((status, body['reason']), (422, 'Invalid'), (path, name))
            self.assertIn('metadata.name: Invalid value', body['message'])
        self.ok(201, s.call('POST', '/api/v1/namespaces/default/configmaps', config_map('a.b-c')))

    def test_creating_in_a_missing_namespace_is_404(self):
        s = self.start()
        status, body = s.call('POST', '/api/v1/namespaces/nowhere/configmaps', config_map('a'))
        self.assertEqual((status, body['reason']), (404, 'NotFound'))

    def test_a_patch_with_a_stale_resource_version_is_409_conflict(self):
        s = self.start()
        path = '/apis/coordination.k8s.io/v1/namespaces/default/leases'
        lease = self.ok(201, s.call('POST', path, {'apiVersion': 'coordination.k8s.io/v1', 'kind': 'Lease',
                                                   'metadata': {'name': 'sinew'}, 'spec': {'holderIdentity': 'a'}}))
        rv = lease['metadata']['resourceVersion']
        merge = 'application/merge-patch+json'
        taken = self.ok(200, s.call('PATCH', f'{path}/sinew', {'metadata': {'resourceVersion': rv},
                                                                'spec': {'holderIdentity': 'b'}}, merge))
        self.assertNotEqual(taken['metadata']['resourceVersion'], rv)
        status, body = s.call('PATCH', f'{path}/sinew', {'metadata': {'resourceVersion': rv},
                                                          'spec': {'holderIdentity': 'c'}}, merge)
        self.assertEqual((status, body['reason']), (409, 'Conflict'))
        self.assertEqual(self.ok(200, s.call('GET', f'{path}/sinew'))['spec']['holderIdentity'], 'b')

    def test_json_patch_and_put_update_the_object(self):
        s = self.start()
        path = '/api/v1/namespaces/default/configmaps'
        self.ok(201, s.call('POST', path, config_map('a', {'k': 'v'})))
        patched = self.ok(200, s.call('PATCH', f'{path}/a', [{'op': 'add', 'path': '/data/j', 'value': 'w'}],
                                      'application/json-patch+json'))
        self.assertEqual(patched['data'], {'k': 'v', 'j': 'w'})
        replaced = self.ok(200, s.call('PUT', f'{path}/a', config_map('a', {'only': 'this'})))
        self.assertEqual(replaced['data'], {'only': 'this'})
        self.assertEqual(replaced['metadata']['uid'], patched['metadata']['uid'])

    def test_deleting_an_object_with_finalizers_waits_for_them(self):
        s = self.start()
        path = '/api/v1/namespaces/default/configmaps'
        cm = config_map('a')
        cm['metadata']['finalizers'] = ['x/y']
        self.ok(201, s.call('POST', path, cm))
        marked = self.ok(200, s.call('DELETE', f'{path}/a'))
        self.assertIn('deletionTimestamp', marked['metadata'])
        self.ok(200, s.call('GET', f'{path}/a'))
        self.ok(200, s.call('PATCH', f'{path}/a', {'metadata': {'finalizers': None}}, 'application/merge-patch+json'))
        self.assertEqual(s.call('GET', f'{path}/a')[0], 404)

    def test_deleting_a_collection_deletes_the_selected_objects(self):
        s = self.start()
        path = '/api/v1/namespaces/default/configmaps'
        for name, app in (('a', 'x'), ('b', 'x'), ('c', 'y')):
            self.ok(201, s.call('POST', path, config_map(name, labels={'app': app})))
        deleted = self.ok(200, s.call('DELETE', f'{path}?labelSelector=app%3Dx'))
        self.assertEqual([o['metadata']['name'] for o in deleted['items']], ['a', 'b'])
        left = self.ok(200, s.call('GET', path))
        self.assertEqual([o['metadata']['name'] for o in left['items']], ['c'])

    # --- TokenReview ---

    def review(self, s, token, audiences):
        body = {'apiVersion': 'authentication.k8s.io/v1', 'kind': 'TokenReview',
                'spec': {'token': token, 'audiences': audiences}}
        return self.ok(201, s.call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', body))['status']

    def test_token_review_answers_from_the_tokens_file_reread_on_every_review(self):
        s = self.start()
        with open(s.tokens, 'w') as f:
            json.dump({'tok-a': {'namespace': 'shop', 'serviceAccount': 'reviews', 'pod': 'reviews-0',
                                 'audiences': ['sinew-ca']}}, f)
        allowed = self.review(s, 'tok-a', ['sinew-ca'])
        self.assertTrue(allowed['authenticated'])
        self.assertEqual(allowed['audiences'], ['sinew-ca'])
        self.assertEqual(allowed['user']['username'], 'system:serviceaccount:shop:reviews')
        self.assertIn('system:serviceaccounts', allowed['user']['groups'])
        self.assertEqual(allowed['user']['extra']['authentication.kubernetes.io/pod-name'], ['reviews-0'])
        unknown = self.review(s, 'tok-b', ['sinew-ca'])
        self.assertFalse(unknown['authenticated'])
        self.assertIn('error', unknown)
        wrong_audience = self.review(s, 'tok-a', ['other'])
        self.assertFalse(wrong_audience['authenticated'])
        with open(s.tokens, 'w') as f:
            json.dump({'tok-a': {'namespace': 'shop', 'serviceAccount': 'reviews', 'audiences': ['other']}}, f)
        self.assertFalse(self.review(s, 'tok-a', ['sinew-ca'])['authenticated'], 'the file is read again')

    # --- restart ---

    def test_objects_survive_a_restart_on_the_same_port(self):
        s = self.start(seed=[crd('sinew.dev', 'destinationrules', 'DestinationRule', ['v1alpha1'])])
        created = self.ok(201, s.call('POST', '/api/v1/namespaces/default/configmaps', config_map('a', {'k': 'v'})))
        dr = self.ok(201, s.call('POST', '/apis/sinew.dev/v1alpha1/namespaces/default/destinationrules',
                                 {'apiVersion': 'sinew.dev/v1alpha1', 'kind': 'DestinationRule',
                                  'metadata': {'name': 'r'}, 'spec': {}}))
        port = s.port
        s.restart()
        self.assertEqual(s.port, port)
        self.assertEqual(self.ok(200, s.call('GET', '/api/v1/namespaces/default/configmaps/a')), created)
        self.assertEqual(self.ok(200, s.call('GET', '/apis/sinew.dev/v1alpha1/namespaces/default/destinationrules/r')), dr)

    def test_the_client_token_is_enforced_when_given(self):
        s = self.start(extra=['--client-token', 'secret'])
        self.assertEqual(s.call('GET', '/api/v1/namespaces')[0], 401)


if __name__ == '__main__':
    unittest.main(verbosity=1)
