#!/usr/bin/env python3
"""A fake Kubernetes API server for the control plane's end-to-end tests (no kube-apiserver can run
on the test machines).

    python fake_apiserver.py --host 127.0.0.1 --port 0 [--seed seed.json] [--state state.json]
        [--tokens tokens.json] [--client-token TOKEN] [--bookmark-seconds S] [--history N]

prints `FAKE_APISERVER_READY http://127.0.0.1:PORT` on stdout once listening, one line per request
on stderr, and runs until SIGTERM/SIGINT.

Promises (what kube-rs's watcher and our clients rely on; the real API server does the same):
- objects are stored once per (group, resource) and served at every version the resource serves
  (a CRD's `served` versions; `apiVersion` rewritten, no conversion); namespaced and cluster-scoped
  paths, `GET /api/v1/namespaces` included;
- resourceVersions are numbers from one counter, strictly increasing across restarts, on every
  object, list and watch event; a watch from RV N streams only events after N; a watch from an RV
  this process cannot serve (from before this boot, older than the kept history, or from the
  future) gets one `ERROR` event with a 410 `Expired` Status; without an RV (or "0") a watch
  starts with `ADDED` for every object; `timeoutSeconds`, `allowWatchBookmarks` (a BOOKMARK every
  --bookmark-seconds), `sendInitialEvents` (with the initial-events-end bookmark),
  `labelSelector` and `fieldSelector` (any dotted field, `=`, `==`, `!=`) on lists and watches;
- `uid`, `creationTimestamp`; `generation` on custom resources and the builtins that have one
  (GENERATION_KINDS), +1 when anything but metadata/status changes;
- POST (201; 409 `AlreadyExists`; 404 when the namespace does not exist; 422 for a name the real
  server refuses; `generateName`), GET, DELETE on a collection (with selectors),
  PUT and PATCH (merge, strategic merge as merge, JSON patch, apply as merge-or-create) on the
  object and its `/status` (each writes only its own part when the resource has a status
  subresource), a `metadata.resourceVersion` in the body that is not the current one → 409
  `Conflict`; an update that changes nothing keeps the RV and emits no event; DELETE (finalizers
  → `deletionTimestamp` first), watchers get `DELETED` with a new RV;
- CustomResourceDefinitions: creating one serves its resource (list/watch 404 with the real
  server's plain-text `404 page not found` until then); deleting one deletes its objects
  (watchers get `DELETED`), ends the watches and stops serving it; custom resources written
  through the API are pruned to their version's schema (undeclared fields and non-nullable nulls
  dropped) and refused with 422 `Invalid` on `type`, `required` and `enum` violations (other
  schema keywords are not checked; seeded objects are stored as given);
- TokenReview answered from --tokens (re-read on every review; see `review_token`);
- --state rewritten (atomically) after every change and loaded at start in place of --seed, so a
  restart on the same port keeps the objects; the namespaces default, kube-system, kube-public and
  kube-node-lease exist on a fresh start (other namespaces must be seeded or created);
- discovery (`/version`, `/api`, `/apis`, `/apis/G`, `/apis/G/V`, `/api/v1`) is kmock 0.8's
  `KubernetesScaffold`, fed with its bundled builtins and the CRDs created here.

Deviations from a real API server: no authorisation (any bearer token, or exactly
--client-token when given), no admission webhooks, no paging (`limit` is
ignored, lists are whole), no SSA field ownership, strategic merge patches merge like JSON merge
patches (lists replaced), `dryRun` and `fieldManager` are ignored, a namespace is deleted at
once (its objects stay), Pod status is kept on create, `/version` is kmock's (v1.26.4+k3s1).
"""

import argparse
import asyncio
import copy
import datetime
import json
import os
import re
import signal
import sys
import uuid
from collections import deque

import aiohttp.web
import jsonpatch
import kmock

INITIAL_NAMESPACES = ('default', 'kube-system', 'kube-public', 'kube-node-lease')
API_AUDIENCE = 'https://kubernetes.default.svc.cluster.local'
# Builtins whose metadata.generation the real server keeps (besides every custom resource).
GENERATION_KINDS = {'customresourcedefinitions', 'pods', 'validatingwebhookconfigurations',
                    'mutatingwebhookconfigurations', 'deployments', 'statefulsets', 'daemonsets',
                    'replicasets', 'jobs', 'cronjobs', 'ingresses', 'networkpolicies'}


def now_rfc3339():
    return datetime.datetime.now(tz=datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def status_body(code, reason, message, details=None):
    body = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
            'message': message, 'reason': reason, 'code': code}
    if details:
        body['details'] = details
    return body


class ApiError(Exception):
    """An error answered with a Status object (or plain text for unknown paths)."""

    def __init__(self, code, reason, message, details=None, text=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details, self.text = code, reason, message, details, text

    def response(self):
        if self.text is not None:
            return aiohttp.web.Response(status=self.code, text=self.text, content_type='text/plain')
        return aiohttp.web.json_response(status_body(self.code, self.reason, self.message, self.details),
                                         status=self.code)


def page_not_found():
    # What the real server answers for a group/version/resource it does not serve.
    return ApiError(404, 'NotFound', '404 page not found', text='404 page not found\n')


def not_found(kind, name):
    return ApiError(404, 'NotFound', f'{kind.qualified} "{name}" not found',
                    {'name': name, 'group': kind.group, 'kind': kind.plural})


def conflict(kind, name):
    return ApiError(409, 'Conflict',
                    f'Operation cannot be fulfilled on {kind.qualified} "{name}": the object has been'
                    ' modified; please apply your changes to the latest version and try again',
                    {'name': name, 'group': kind.group, 'kind': kind.plural})


def bad_request(message):
    return ApiError(400, 'BadRequest', message)


# Names: resources whose names are DNS-1123 labels; every other name is a DNS-1123 subdomain.
LABEL_NAMED = {'namespaces', 'services'}
DNS_LABEL = re.compile(r'[a-z0-9]([-a-z0-9]*[a-z0-9])?')
DNS_SUBDOMAIN = re.compile(r'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')


def check_name(kind, name):
    """422 `Invalid` for a name the real server refuses."""
    if kind.group == '' and kind.plural in LABEL_NAMED:
        ok, what, limit = DNS_LABEL.fullmatch(name) and len(name) <= 63, 'RFC 1123 label', 63
    else:
        ok, what, limit = DNS_SUBDOMAIN.fullmatch(name) and len(name) <= 253, 'RFC 1123 subdomain', 253
    if not ok:
        raise ApiError(422, 'Invalid', f'{kind.kind} "{name}" is invalid: metadata.name: Invalid value: '
                       f'"{name}": a lowercase {what} must consist of lower case alphanumeric characters,'
                       f" '-' or '.', and must start and end with an alphanumeric character"
                       f' (at most {limit} characters)',
                       {'name': name, 'group': kind.group, 'kind': kind.kind})


# === Kinds ===


class Kind:
    """A served resource: its identity, versions, and the history its watches read."""

    def __init__(self, group, plural, kind, namespaced, versions, status_subresource, crd_name=None):
        self.group, self.plural, self.kind = group, plural, kind
        self.namespaced = namespaced
        self.versions = list(versions)
        self.status_subresource = status_subresource
        self.crd_name = crd_name  # set for resources a CustomResourceDefinition serves
        self.schemas = {}  # version -> openAPIV3Schema (CRDs)
        self.objects = {}  # (namespace or '', name) -> object (never mutated once stored)
        self.history = deque()  # (rv, type, object, previous object)
        self.floor = 0  # watches from an RV below this cannot be served (410)
        self.changed = asyncio.Event()
        self.gone = False

    @property
    def qualified(self):
        return f'{self.plural}.{self.group}' if self.group else self.plural

    def api_version(self, version):
        return f'{self.group}/{version}' if self.group else version

    def notify(self):
        self.changed.set()
        self.changed = asyncio.Event()


def builtin_kinds(scaffold):
    """The builtins kmock bundles (K3s's, loaded into `scaffold`), by (group, plural), with their
    served versions."""
    kinds = {}
    for res in scaffold.resources:
        info = scaffold.resources[res]
        if '/' in res.plural or 'list' not in info.verbs:
            continue
        key = (res.group, res.plural)
        if key in kinds:
            kinds[key].versions.append(res.version)
        else:
            kinds[key] = Kind(res.group, res.plural, info.kind, bool(info.namespaced), [res.version],
                              'status' in info.subresources)
    return kinds


# === Selectors ===


def split_top(text):
    """Splits a selector at commas outside parentheses."""
    parts, depth, cur = [], 0, ''
    for ch in text:
        if ch == '(':
            depth += 1
        elif ch == ')':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def label_selector(text):
    """A predicate on a labels dict for `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`."""
    if not text:
        return lambda labels: True
    tests = []
    for term in split_top(text):
        m = re.fullmatch(r'(\S+)\s+(in|notin)\s+\((.*)\)', term)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(',')}
            if op == 'in':
                tests.append(lambda l, k=key, vs=values: l.get(k) in vs)
            else:
                tests.append(lambda l, k=key, vs=values: l.get(k) not in vs)
        elif '!=' in term:
            key, value = (s.strip() for s in term.split('!=', 1))
            tests.append(lambda l, k=key, v=value: l.get(k) != v)
        elif '=' in term:
            key, value = (s.strip() for s in re.split('==?', term, maxsplit=1))
            tests.append(lambda l, k=key, v=value: l.get(k) == v)
        elif term.startswith('!'):
            tests.append(lambda l, k=term[1:].strip(): k not in l)
        else:
            tests.append(lambda l, k=term: k in l)
    return lambda labels: all(t(labels) for t in tests)


def field_selector(text):
    """A predicate on an object for `path.to.field=value`, `==` and `!=` (dotted paths)."""
    if not text:
        return lambda obj: True
    tests = []
    for term in split_top(text):
        negate = '!=' in term
        key, value = (s.strip() for s in re.split('!=|==?', term, maxsplit=1))

        def get(obj, path=key.split('.')):
            for part in path:
                obj = obj.get(part) if isinstance(obj, dict) else None
            return '' if obj is None else str(obj)

        tests.append(lambda o, g=get, v=value, n=negate: (g(o) != v) if n else (g(o) == v))
    return lambda obj: all(t(obj) for t in tests)


# === Patches ===


def merge_patch(target, patch):
    """RFC 7386: objects merge, `null` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def without(obj, *keys):
    return {k: v for k, v in obj.items() if k not in keys}


# === CRD schemas ===


def prune(value, schema):
    """What the real server stores of a custom resource (structural schema pruning): fields the
    schema does not declare are dropped (unless `x-kubernetes-preserve-unknown-fields` or
    `additionalProperties`), and so are nulls where the schema is not `nullable`."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get('properties') or {}
        extra = schema.get('additionalProperties')
        keep = schema.get('x-kubernetes-preserve-unknown-fields') or extra is True
        out = {}
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is None:
                if keep:
                    out[key] = item
                continue
            if item is None and not sub.get('nullable'):
                continue
            out[key] = prune(item, sub)
        return out
    if isinstance(value, list) and isinstance(schema.get('items'), dict):
        return [prune(item, schema['items']) for item in value]
    return value


def join(path, key):
    return f'{path}.{key}' if path else key


JSON_TYPES = {'string': (str,), 'integer': (int,), 'number': (int, float), 'boolean': (bool,),
              'object': (dict,), 'array': (list,)}


def schema_errors(value, schema, path):
    """The real server's messages for `type`, `required` and `enum` violations (other keywords
    are not checked)."""
    if not isinstance(schema, dict) or value is None:
        return []
    expected = schema.get('type')
    if schema.get('x-kubernetes-int-or-string'):
        ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        expected = 'integer-or-string'
    elif expected in JSON_TYPES:
        ok = isinstance(value, JSON_TYPES[expected]) and (expected == 'boolean' or not isinstance(value, bool))
    else:
        ok = True
    if not ok:
        got = next(name for name, types in JSON_TYPES.items()
                   if isinstance(value, types) and (name == 'boolean') == isinstance(value, bool))
        return [f'{path}: Invalid value: "{got}": {path} in body must be of type {expected}: "{got}"']
    errors = []
    if 'enum' in schema and value not in schema['enum']:
        allowed = ', '.join(json.dumps(v) for v in schema['enum'])
        errors.append(f'{path}: Unsupported value: {json.dumps(value)}: supported values: {allowed}')
    if isinstance(value, dict):
        errors += [f'{join(path, key)}: Required value' for key in schema.get('required', []) if key not in value]
        props, extra = schema.get('properties') or {}, schema.get('additionalProperties')
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            errors += schema_errors(item, sub, join(path, key))
    if isinstance(value, list):
        for i, item in enumerate(value):
            errors += schema_errors(item, schema.get('items'), f'{path}[{i}]')
    return errors


def crd_status(crd):
    """The status the real server gives a CRD it accepts (at once, here)."""
    spec = crd.get('spec', {})
    return {'acceptedNames': spec.get('names', {}),
            'storedVersions': [v['name'] for v in spec.get('versions', []) if v.get('storage')],
            'conditions': [{'type': t, 'status': 'True', 'reason': r, 'message': m,
                            'lastTransitionTime': now_rfc3339()} for t, r, m in (
                ('NamesAccepted', 'NoConflicts', 'no conflicts found'),
                ('Established', 'InitialNamesAccepted', 'the initial names have been accepted'))]}


# === Store ===


class Store:
    """Every object, the resourceVersion counter, and the state file."""

    def __init__(self, state_path, history, scaffold):
        self.state_path = state_path
        self.history_len = history
        self.kinds = builtin_kinds(scaffold)
        self.rv = 0
        self.boot_rv = 0
        self.scaffold = scaffold  # kmock's discovery handler, told about CRDs

    # --- loading and saving ---

    def load(self, seed_path):
        state = None
        if self.state_path and os.path.exists(self.state_path):
            with open(self.state_path) as f:
                state = json.load(f)
        if state is not None:
            self.rv = int(state.get('resourceVersion', 0))
            objects = state.get('objects', [])
            fresh = False
        else:
            objects = []
            if seed_path:
                with open(seed_path) as f:
                    seed = json.load(f)
                objects = seed.get('items', []) if isinstance(seed, dict) else seed
            fresh = True
        # CRDs first: they make their kinds known.
        objects = sorted(objects, key=lambda o: o.get('kind') != 'CustomResourceDefinition')
        for obj in objects:
            kind = self.kind_of(obj)
            if kind is None:
                raise SystemExit(f'fake_apiserver: unknown apiVersion/kind in seed or state: '
                                 f'{obj.get("apiVersion")}/{obj.get("kind")}')
            meta = obj.setdefault('metadata', {})
            if fresh:
                self.stamp_new(obj)
                if kind.plural == 'customresourcedefinitions' and 'status' not in obj:
                    obj['status'] = crd_status(obj)
            ns = meta.get('namespace', '') if kind.namespaced else ''
            if not kind.namespaced:
                meta.pop('namespace', None)
            kind.objects[(ns, meta['name'])] = obj
            if kind.group == 'apiextensions.k8s.io' and kind.plural == 'customresourcedefinitions':
                self.serve_crd(obj)
        if fresh:
            namespaces = self.kinds[('', 'namespaces')]
            for name in INITIAL_NAMESPACES:
                if ('', name) not in namespaces.objects:
                    obj = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name},
                           'spec': {'finalizers': ['kubernetes']}, 'status': {'phase': 'Active'}}
                    self.stamp_new(obj)
                    namespaces.objects[('', name)] = obj
        # One step past everything handed out before: RVs of earlier boots are below boot_rv.
        self.rv += 1
        self.boot_rv = self.rv
        for kind in self.kinds.values():
            kind.floor = self.boot_rv
        self.save()

    def save(self):
        if not self.state_path:
            return
        objects = [obj for kind in self.kinds.values() for obj in kind.objects.values()]
        tmp = f'{self.state_path}.tmp'
        text = json.dumps({'resourceVersion': self.rv, 'objects': objects}, separators=(',', ':'))
        with open(tmp, 'w') as f:
            f.write(text)
        os.replace(tmp, self.state_path)

    def kind_of(self, obj):
        api_version, kind_name = obj.get('apiVersion', ''), obj.get('kind')
        group, _, version = api_version.rpartition('/')
        for kind in self.kinds.values():
            if kind.group == group and kind.kind == kind_name and version in kind.versions:
                return kind
        return None

    def next_rv(self):
        self.rv += 1
        return self.rv

    def stamp_new(self, obj):
        meta = obj.setdefault('metadata', {})
        meta['uid'] = str(uuid.uuid4())
        meta['creationTimestamp'] = now_rfc3339()
        meta['resourceVersion'] = str(self.next_rv())
        meta.pop('deletionTimestamp', None)
        kind = self.kind_of(obj)
        if kind is not None and (kind.crd_name is not None or kind.plural in GENERATION_KINDS):
            meta['generation'] = 1

    # --- CRDs ---

    def serve_crd(self, crd):
        spec = crd.get('spec', {})
        names = spec.get('names', {})
        group, plural = spec.get('group', ''), names.get('plural', '')
        versions = [v for v in spec.get('versions', []) if v.get('served', True)]
        if not group or not plural or not versions:
            raise bad_request('CustomResourceDefinition needs spec.group, spec.names.plural and a served version')
        status = any('status' in (v.get('subresources') or {}) for v in versions)
        key = (group, plural)
        kind = self.kinds.get(key)
        if kind is None:
            kind = Kind(group, plural, None, True, [], False, crd_name=crd['metadata']['name'])
            kind.floor = self.rv
            self.kinds[key] = kind
        else:
            self.discover(kind, False)
        # An update changes the kind in place: its watchers keep waiting on it.
        kind.kind = names.get('kind', plural)
        kind.namespaced = spec.get('scope', 'Namespaced') == 'Namespaced'
        kind.versions = [v['name'] for v in versions]
        kind.status_subresource = status
        kind.schemas = {v['name']: (v.get('schema') or {}).get('openAPIV3Schema') for v in versions}
        self.discover(kind, True)

    def unserve_crd(self, crd):
        spec = crd.get('spec', {})
        key = (spec.get('group', ''), spec.get('names', {}).get('plural', ''))
        kind = self.kinds.get(key)
        if kind is None or kind.crd_name != crd['metadata']['name']:
            return
        for (ns, name), obj in sorted(kind.objects.items()):
            self.record(kind, 'DELETED', self.with_new_rv(obj), obj)
        kind.objects = {}
        kind.gone = True
        kind.notify()
        del self.kinds[key]
        self.discover(kind, False)

    def discover(self, kind, serve):
        for version in kind.versions:
            key = f'{kind.group}/{version}/{kind.plural}'
            if serve:
                self.scaffold.resources[key] = {
                    'kind': kind.kind, 'namespaced': kind.namespaced,
                    'verbs': ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
                    'subresources': ['status'] if kind.status_subresource else []}
            elif key in self.scaffold.resources:
                del self.scaffold.resources[key]

    # --- changes ---

    def with_new_rv(self, obj):
        obj = dict(obj)
        obj['metadata'] = dict(obj.get('metadata', {}), resourceVersion=str(self.next_rv()))
        return obj

    def record(self, kind, event_type, obj, previous):
        rv = int(obj['metadata']['resourceVersion'])
        kind.history.append((rv, event_type, obj, previous))
        while len(kind.history) > self.history_len:
            dropped = kind.history.popleft()
            kind.floor = dropped[0]
        kind.notify()

    def put(self, kind, key, obj, previous, event_type):
        """Stores `obj` (already stamped) and tells the watchers; deletes when finalized."""
        meta = obj['metadata']
        if meta.get('deletionTimestamp') and not meta.get('finalizers'):
            kind.objects[key] = obj  # the last state is what DELETED carries
            return self.remove(kind, key, previous)
        kind.objects[key] = obj
        self.record(kind, event_type, obj, previous)
        self.save()
        return obj

    def remove(self, kind, key, previous):
        current = kind.objects.pop(key, previous)
        gone = self.with_new_rv(current)
        self.record(kind, 'DELETED', gone, previous)
        if kind.group == 'apiextensions.k8s.io' and kind.plural == 'customresourcedefinitions':
            self.unserve_crd(current)
        self.save()
        return gone


# === HTTP ===


class Request:
    """A resource request: kind, version, namespace, name, subresource."""

    def __init__(self, kind, version, namespace, name, subresource):
        self.kind, self.version, self.namespace, self.name, self.subresource = (
            kind, version, namespace, name, subresource)


class FakeApiServer:
    """The HTTP side: resource paths and TokenReview here, the rest to kmock's scaffold."""

    def __init__(self, args):
        self.args = args
        self.scaffold = kmock.KubernetesScaffold()
        self.scaffold.resources.load_bundled()
        self.store = Store(args.state, args.history, self.scaffold)

    async def start(self):
        await self.scaffold.__aenter__()
        self.store.load(self.args.seed)

    # --- dispatch ---

    async def handle(self, raw):
        try:
            response = await self.dispatch(raw)
        except ApiError as e:
            response = e.response()
        except Exception as e:  # a bug here: say so like the real server's 500
            response = ApiError(500, 'InternalError', f'{type(e).__name__}: {e}').response()
        print(f'{raw.method} {raw.path_qs} {response.status}', file=sys.stderr, flush=True)
        return response

    async def dispatch(self, raw):
        token = self.args.client_token
        if token is not None and raw.headers.get('Authorization') != f'Bearer {token}':
            raise ApiError(401, 'Unauthorized', 'Unauthorized')
        path = raw.path.rstrip('/')
        if path in ('/healthz', '/livez', '/readyz'):
            return aiohttp.web.Response(text='ok')
        parts = path.strip('/').split('/')
        if parts[:1] == ['api'] and len(parts) >= 3:
            group, version, rest = '', parts[1], parts[2:]
        elif parts[:1] == ['apis'] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return await self.discovery(raw)
        if (group, version, rest) == ('authentication.k8s.io', 'v1', ['tokenreviews']):
            if raw.method != 'POST':
                raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
            return aiohttp.web.json_response(self.review_token(await self.body(raw)), status=201)
        req = self.parse(group, version, rest)
        query = raw.query
        method = raw.method
        if method == 'GET' and req.name is None:
            if query.get('watch') in ('true', '1'):
                return await self.watch(raw, req)
            return self.list(req, query)
        if method == 'GET' and query.get('watch') in ('true', '1'):
            # A watch of one object: kube's `watch_object` uses a field selector instead; both work.
            req.name, fs = None, f'metadata.name={req.name}'
            query = dict(query)
            query['fieldSelector'] = ','.join(s for s in (query.get('fieldSelector'), fs) if s)
            return await self.watch(raw, req, query)
        if method == 'GET':
            return self.reply(req, self.get(req))
        if method == 'POST' and req.name is None and req.subresource is None:
            return self.reply(req, self.create(req, await self.body(raw)), 201)
        if method == 'PUT' and req.name is not None:
            return self.reply(req, self.update(req, await self.body(raw)))
        if method == 'PATCH' and req.name is not None:
            ctype = raw.headers.get('Content-Type', '').split(';')[0].strip()
            return self.reply(req, self.patch(req, ctype, await self.body(raw)))
        if method == 'DELETE' and req.name is None and req.subresource is None:
            return self.delete_collection(req, query)
        if method == 'DELETE' and req.name is not None:
            text = await raw.text()
            return self.reply(req, self.delete(req, json.loads(text) if text.strip() else {}))
        raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')

    async def discovery(self, raw):
        """Discovery, /version and unknown paths: kmock's scaffold (its `/api/v1` says
        `groupVersion: "/v1"`, corrected here to the real `v1`)."""
        response = await self.scaffold(raw)
        if raw.path.rstrip('/') == '/api/v1' and response.status == 200:
            body = json.loads(response.body)
            body['groupVersion'] = 'v1'
            return aiohttp.web.json_response(body)
        return response

    def parse(self, group, version, rest):
        namespace = None
        kinds = self.store.kinds
        # /namespaces/NS/PLURAL[/NAME[/SUB]] is namespaced unless PLURAL is a namespace subresource.
        if (len(rest) >= 3 and rest[0] == 'namespaces' and (group, rest[2]) in kinds
                and kinds[(group, rest[2])].namespaced):
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], rest[1] if len(rest) > 1 else None
        subresource = '/'.join(rest[2:]) or None
        kind = kinds.get((group, plural))
        if kind is None or version not in kind.versions:
            raise page_not_found()
        if namespace is not None and not kind.namespaced:
            raise page_not_found()
        if subresource not in (None, 'status'):
            raise ApiError(404, 'NotFound', f'the server could not find the requested resource ({subresource})')
        if subresource == 'status' and not kind.status_subresource:
            raise page_not_found()
        return Request(kind, version, namespace, name, subresource)

    async def body(self, raw):
        try:
            body = json.loads(await raw.text())
        except ValueError as e:
            raise bad_request(f'the body is not JSON: {e}') from None
        return body

    def out(self, req, obj):
        """The object as served at the request's version (CRDs: no conversion, apiVersion only)."""
        api_version = req.kind.api_version(req.version)
        if obj.get('apiVersion') == api_version and obj.get('kind') == req.kind.kind:
            return obj
        return dict(obj, apiVersion=api_version, kind=req.kind.kind)

    def reply(self, req, obj, status=200):
        return aiohttp.web.json_response(self.out(req, obj), status=status)

    # --- reads ---

    def get(self, req):
        obj = req.kind.objects.get((req.namespace or '', req.name))
        if obj is None:
            raise not_found(req.kind, req.name)
        return obj

    def select(self, req, query):
        labels = label_selector(query.get('labelSelector', ''))
        fields = field_selector(query.get('fieldSelector', ''))
        return lambda obj: ((req.namespace is None or obj['metadata'].get('namespace') == req.namespace)
                            and labels(obj['metadata'].get('labels') or {}) and fields(obj))

    def list(self, req, query):
        wanted = self.select(req, query)
        items = [self.out(req, obj) for _, obj in sorted(req.kind.objects.items()) if wanted(obj)]
        return aiohttp.web.json_response({
            'kind': f'{req.kind.kind}List', 'apiVersion': req.kind.api_version(req.version),
            'metadata': {'resourceVersion': str(self.store.rv)}, 'items': items})

    async def watch(self, raw, req, query=None):
        query = raw.query if query is None else query
        # (the request is checked before the 200 goes out: errors are Status responses)
        wanted = self.select(req, query)
        try:
            timeout = float(query.get('timeoutSeconds', '1800'))
        except ValueError:
            raise bad_request('timeoutSeconds must be a number') from None
        rv_text = query.get('resourceVersion', '')
        if rv_text not in ('', '0') and not rv_text.isdigit():
            raise bad_request(f'invalid resourceVersion {rv_text!r}')
        response = aiohttp.web.StreamResponse(headers={'Content-Type': 'application/json'})
        await response.prepare(raw)
        try:
            await self.stream(req, query, wanted, timeout, response)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        return response

    async def stream(self, req, query, wanted, timeout, response):
        kind, store = req.kind, self.store

        async def send(event_type, obj):
            line = json.dumps({'type': event_type, 'object': obj}) + '\n'
            await response.write(line.encode())

        def bookmark(annotations=None):
            meta = {'resourceVersion': str(store.rv)}
            if annotations:
                meta['annotations'] = annotations
            return {'kind': kind.kind, 'apiVersion': kind.api_version(req.version), 'metadata': meta}

        bookmarks = query.get('allowWatchBookmarks') == 'true'
        rv_text = query.get('resourceVersion', '')
        initial = query.get('sendInitialEvents') == 'true'
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if rv_text in ('', '0') or initial:
            cursor = store.rv
            for _, obj in sorted(kind.objects.items()):
                if wanted(obj):
                    await send('ADDED', self.out(req, obj))
            if initial and bookmarks:
                await send('BOOKMARK', bookmark({'k8s.io/initial-events-end': 'true'}))
        else:
            cursor = int(rv_text)
            if cursor < kind.floor or cursor > store.rv:
                await send('ERROR', status_body(
                    410, 'Expired', f'too old resource version: {cursor} ({kind.floor})'))
                return
        while True:
            changed = kind.changed
            if cursor < kind.floor:  # history dropped under a slow watcher
                await send('ERROR', status_body(410, 'Expired', f'too old resource version: {cursor} ({kind.floor})'))
                break
            for rv, event_type, obj, previous in list(kind.history):
                if rv <= cursor:
                    continue
                cursor = rv
                now_in = event_type != 'DELETED' and wanted(obj)
                was_in = previous is not None and wanted(previous)
                if event_type == 'DELETED':
                    if was_in or wanted(obj):
                        await send('DELETED', self.out(req, obj))
                elif now_in:
                    await send('ADDED' if (event_type == 'ADDED' or not was_in) else 'MODIFIED', self.out(req, obj))
                elif was_in:  # left the selection: the real server says DELETED
                    await send('DELETED', self.out(req, obj))
            if kind.gone:  # its CRD was deleted: the real server ends the watch too
                break
            left = deadline - loop.time()
            if left <= 0:
                break
            wait = min(left, self.args.bookmark_seconds) if bookmarks else left
            try:
                await asyncio.wait_for(changed.wait(), wait)
            except TimeoutError:
                if bookmarks and loop.time() < deadline:
                    cursor = max(cursor, store.rv)
                    await send('BOOKMARK', bookmark())

    # --- writes ---

    def check_namespace(self, req):
        if req.kind.namespaced and ('', req.namespace) not in self.store.kinds[('', 'namespaces')].objects:
            raise ApiError(404, 'NotFound', f'namespaces "{req.namespace}" not found',
                           {'name': req.namespace, 'kind': 'namespaces'})

    def create(self, req, obj):
        kind, store = req.kind, self.store
        if not isinstance(obj, dict):
            raise bad_request('the body is not an object')
        if kind.namespaced and req.namespace is None:
            raise page_not_found()
        meta = obj.setdefault('metadata', {})
        if meta.get('namespace') not in (None, '', req.namespace):
            raise bad_request('the namespace of the provided object does not match the namespace sent on the request')
        if not meta.get('name') and meta.get('generateName'):
            meta['name'] = meta['generateName'] + uuid.uuid4().hex[:5]
        name = meta.get('name')
        if not name:
            raise ApiError(422, 'Invalid', f'{kind.kind} "" is invalid: metadata.name: Required value: name or generateName is required')
        check_name(kind, name)
        self.check_namespace(req)
        key = (req.namespace or '', name)
        if key in kind.objects:
            raise ApiError(409, 'AlreadyExists', f'{kind.qualified} "{name}" already exists',
                           {'name': name, 'group': kind.group, 'kind': kind.plural})
        obj = dict(obj, apiVersion=kind.api_version(req.version), kind=kind.kind)
        meta = obj['metadata'] = dict(meta)
        if kind.namespaced:
            meta['namespace'] = req.namespace
        else:
            meta.pop('namespace', None)
        if kind.crd_name is not None and kind.status_subresource:
            obj.pop('status', None)
        obj = self.conform(req, obj, name)
        if kind.group == 'apiextensions.k8s.io' and kind.plural == 'customresourcedefinitions':
            obj['status'] = crd_status(obj)
            store.serve_crd(obj)  # raises on a CRD it cannot serve, before anything is stored
        store.stamp_new(obj)
        if kind.group == 'apiextensions.k8s.io' and kind.plural == 'customresourcedefinitions':
            # A served CRD's kind learns about watches from now on (floor: this RV).
            served = store.kinds[(obj['spec']['group'], obj['spec']['names']['plural'])]
            served.floor = min(served.floor, int(obj['metadata']['resourceVersion']))
        return store.put(kind, key, obj, None, 'ADDED')

    def write(self, req, current, desired):
        """Stores `desired` in place of `current` with the rules of the endpoint used."""
        kind = req.kind
        if not isinstance(desired, dict):
            raise bad_request('the body is not an object')
        wanted_rv = (desired.get('metadata') or {}).get('resourceVersion')
        if wanted_rv not in (None, '') and wanted_rv != current['metadata'].get('resourceVersion'):
            raise conflict(kind, req.name)
        if kind.status_subresource:
            if req.subresource == 'status':
                desired = dict(current, status=desired['status']) if 'status' in desired else without(current, 'status')
            elif 'status' in current:
                desired = dict(desired, status=current['status'])
            else:
                desired = without(desired, 'status')
        meta = dict(desired.get('metadata') or {})
        old_meta = current['metadata']
        # Fields the server owns.
        for field in ('uid', 'creationTimestamp', 'name', 'namespace', 'deletionTimestamp', 'generation'):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        meta['resourceVersion'] = old_meta['resourceVersion']
        desired = dict(desired, metadata=meta, apiVersion=current['apiVersion'], kind=current['kind'])
        desired = self.conform(req, desired, req.name)
        if desired == current:
            return current  # nothing changed: same RV, no event (as the real server)
        if 'generation' in old_meta and without(desired, 'metadata', 'status') != without(current, 'metadata', 'status'):
            meta['generation'] = old_meta['generation'] + 1
        meta['resourceVersion'] = str(self.store.next_rv())
        key = (req.namespace or '', req.name)
        if kind.group == 'apiextensions.k8s.io' and kind.plural == 'customresourcedefinitions':
            self.store.serve_crd(desired)
        return self.store.put(kind, key, desired, current, 'MODIFIED')

    def conform(self, req, obj, name):
        """A custom resource as the real server stores it: pruned to its version's schema, or a
        422 `Invalid` listing what the schema refuses. Other objects as they are."""
        schema = req.kind.schemas.get(req.version) if req.kind.crd_name is not None else None
        if not isinstance(schema, dict):
            return obj
        pruned = prune(without(obj, 'apiVersion', 'kind', 'metadata'), schema)
        pruned.update(apiVersion=obj['apiVersion'], kind=obj['kind'], metadata=obj['metadata'])
        errors = schema_errors(without(pruned, 'apiVersion', 'kind', 'metadata'),
                               dict(schema, required=[r for r in schema.get('required', [])
                                                      if r not in ('apiVersion', 'kind', 'metadata')]), '')
        if errors:
            raise ApiError(422, 'Invalid', f'{req.kind.kind}.{req.kind.group} "{name}" is invalid: '
                           f'[{", ".join(errors)}]' if len(errors) > 1 else
                           f'{req.kind.kind}.{req.kind.group} "{name}" is invalid: {errors[0]}',
                           {'name': name, 'group': req.kind.group, 'kind': req.kind.kind})
        return pruned

    def update(self, req, body):
        current = self.get(req)
        return self.write(req, current, body)

    def patch(self, req, ctype, body):
        kind = req.kind
        current = kind.objects.get((req.namespace or '', req.name))
        if current is None:
            if ctype == 'application/apply-patch+yaml' and req.subresource is None:
                body = dict(body, metadata=dict(body.get('metadata') or {}, name=req.name))
                return self.create(req, body)
            raise not_found(kind, req.name)
        if ctype in ('application/merge-patch+json', 'application/strategic-merge-patch+json',
                     'application/apply-patch+yaml'):
            if not isinstance(body, dict):
                raise bad_request('a merge patch must be an object')
            desired = merge_patch(copy.deepcopy(current), body)
            # The precondition is the patch's RV, not the merged one.
            rv = (body.get('metadata') or {}).get('resourceVersion')
            desired['metadata'] = dict(desired.get('metadata') or {}, resourceVersion=rv)
            if rv is None:
                desired['metadata'].pop('resourceVersion')
        elif ctype == 'application/json-patch+json':
            try:
                desired = jsonpatch.apply_patch(current, body)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise ApiError(422, 'Invalid', f'the JSON patch does not apply: {e}') from None
            if desired['metadata'].get('resourceVersion') == current['metadata'].get('resourceVersion'):
                desired['metadata'] = without(desired['metadata'], 'resourceVersion')
        else:
            raise ApiError(415, 'UnsupportedMediaType', f'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ctype!r})')
        return self.write(req, current, desired)

    def delete(self, req, options):
        kind = req.kind
        if req.subresource is not None:
            raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
        key = (req.namespace or '', req.name)
        current = self.get(req)
        wanted_rv = ((options or {}).get('preconditions') or {}).get('resourceVersion')
        if wanted_rv and wanted_rv != current['metadata'].get('resourceVersion'):
            raise conflict(kind, req.name)
        if current['metadata'].get('finalizers'):
            if current['metadata'].get('deletionTimestamp'):
                return current
            meta = dict(current['metadata'], deletionTimestamp=now_rfc3339(),
                        resourceVersion=str(self.store.next_rv()))
            return self.store.put(kind, key, dict(current, metadata=meta), current, 'MODIFIED')
        return self.store.remove(kind, key, current)

    def delete_collection(self, req, query):
        """DELETE on a collection: every selected object, one by one (finalizers respected);
        answers the list of what was deleted or marked, like the real server."""
        wanted = self.select(req, query)
        done = []
        for (ns, name), obj in sorted(req.kind.objects.items()):
            if wanted(obj):
                one = Request(req.kind, req.version, ns or None, name, None)
                done.append(self.out(req, self.delete(one, {})))
        return aiohttp.web.json_response({
            'kind': f'{req.kind.kind}List', 'apiVersion': req.kind.api_version(req.version),
            'metadata': {'resourceVersion': str(self.store.rv)}, 'items': done})

    # --- TokenReview ---

    def review_token(self, review):
        """Answers a TokenReview from the --tokens file (re-read now, so tests can change it):
        `{"TOKEN": {"namespace", "serviceAccount", "pod", "audiences": [...], "error": "..."}}`.
        Like the real authenticator, the review is authenticated only when the token's audiences
        (default: the API server's) meet the requested ones (default: the API server's); the
        status lists the audiences in common. `error` makes a known token fail with that error."""
        spec = review.get('spec') or {}
        token = spec.get('token', '')
        requested = spec.get('audiences') or [API_AUDIENCE]
        tokens = {}
        if self.args.tokens and os.path.exists(self.args.tokens):
            with open(self.args.tokens) as f:
                tokens = json.load(f)
        entry = tokens.get(token)
        status = {'authenticated': False, 'user': {}}
        if entry is None:
            status['error'] = '[invalid bearer token, token lookup failed]'
        elif entry.get('error'):
            status['error'] = entry['error']
        else:
            audiences = entry.get('audiences') or [API_AUDIENCE]
            common = [a for a in requested if a in audiences]
            if not common:
                status['error'] = (f'[invalid bearer token, token audiences {json.dumps(audiences)} is invalid'
                                   f' for the target audiences {json.dumps(requested)}]')
            else:
                ns, sa = entry['namespace'], entry['serviceAccount']
                extra = {'authentication.kubernetes.io/credential-id': [f'JTI={uuid.uuid5(uuid.NAMESPACE_OID, token)}']}
                if entry.get('pod'):
                    extra['authentication.kubernetes.io/pod-name'] = [entry['pod']]
                    extra['authentication.kubernetes.io/pod-uid'] = [str(uuid.uuid5(uuid.NAMESPACE_OID, f'{ns}/{entry["pod"]}'))]
                status = {'authenticated': True, 'audiences': common, 'user': {
                    'username': f'system:serviceaccount:{ns}:{sa}',
                    'uid': str(uuid.uuid5(uuid.NAMESPACE_OID, f'{ns}/{sa}')),
                    'groups': ['system:serviceaccounts', f'system:serviceaccounts:{ns}', 'system:authenticated'],
                    'extra': extra}}
        return {'kind': 'TokenReview', 'apiVersion': 'authentication.k8s.io/v1',
                'metadata': {'creationTimestamp': None}, 'spec': spec, 'status': status}


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=0, help='0 picks a free port')
    parser.add_argument('--seed', help='JSON: a list of objects (or a List) for a fresh start')
    parser.add_argument('--state', help='JSON state file: loaded at start when present, written after every change')
    parser.add_argument('--tokens', help='JSON tokens for TokenReview, re-read on every review')
    parser.add_argument('--client-token', help='accept only this bearer token (default: any)')
    parser.add_argument('--bookmark-seconds', type=float, default=5.0,
                        help='how often watches that allow bookmarks get one (default 5)')
    parser.add_argument('--history', type=int, default=10000,
                        help='events kept per resource for watches from an RV (default 10000)')
    args = parser.parse_args()
    server = FakeApiServer(args)
    await server.start()
    # A stopped API server drops its connections: open watches are not waited for.
    runner = aiohttp.web.ServerRunner(aiohttp.web.Server(server.handle), handle_signals=False,
                                      shutdown_timeout=0.1)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, args.host, args.port, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f'FAKE_APISERVER_READY http://{args.host}:{port}', flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == '__main__':
    asyncio.run(main())
