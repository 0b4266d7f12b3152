#!/usr/bin/env python3
"""The injector webhook's MutatingWebhookConfiguration sends the API server's pods to the injector
exactly as the injection rules say: its namespaceSelector, objectSelector and matchConditions,
evaluated as the API server evaluates them, on every row of
injector-webhook/tests/fixtures/selector-matrix.yaml (the table the injector crate is tested
against too).

Label selectors are evaluated by the small evaluator below (Kubernetes' semantics, checked by its
own tests); matchConditions by a real CEL implementation (the `cel` module of
common-expression-language).
"""

import os
import unittest

import cel
import yaml

import chart
from chart import CUSTOM, documents, find

MATRIX = os.path.join(chart.REPO, 'injector-webhook', 'tests', 'fixtures', 'selector-matrix.yaml')
REASONS = {'namespace-not-labelled', 'istio-namespace', 'system-namespace', 'opted-out-by-label',
           'opted-out-by-annotation', 'host-network'}


def selector_matches(selector, labels):
    """metav1.LabelSelector semantics: every matchLabels pair and every expression must hold; an
    absent or empty selector matches everything; NotIn and DoesNotExist match an absent key."""
    if not selector:
        return True
    for key, value in (selector.get('matchLabels') or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get('matchExpressions') or []:
        key, operator, values = expression['key'], expression['operator'], expression.get('values') or []
        if operator == 'In':
            ok = key in labels and labels[key] in values
        elif operator == 'NotIn':
            ok = key not in labels or labels[key] not in values
        elif operator == 'Exists':
            ok = key in labels
        elif operator == 'DoesNotExist':
            ok = key not in labels
        else:
            raise ValueError(f'unknown selector operator {operator!r}')
        if not ok:
            return False
    return True


def conditions_match(conditions, pod):
    """Every matchCondition true for `object` = the pod (the API server's AND of them)."""
    return all(cel.evaluate(c['expression'], {'object': pod}) for c in conditions or [])


def load_matrix():
    with open(MATRIX) as f:
        return yaml.safe_load(f)


def pod_object(spec):
    return {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': dict(spec['metadata']), 'spec': dict(spec['spec'])}


class SelectorEvaluatorTest(unittest.TestCase):
    """The evaluator follows apimachinery's labels.Selector, whose documented rules these are."""

    def test_not_in_and_does_not_exist_match_an_absent_key_in_and_exists_do_not(self):
        for operator, expected in [('NotIn', True), ('DoesNotExist', True), ('In', False), ('Exists', False)]:
            selector = {'matchExpressions': [{'key': 'k', 'operator': operator, 'values': ['v']}]}
            if operator in ('Exists', 'DoesNotExist'):
                del selector['matchExpressions'][0]['values']
            self.assertEqual(selector_matches(selector, {}), expected, operator)

    def test_expressions_and_match_labels_are_all_required(self):
        selector = {'matchLabels': {'a': '1'}, 'matchExpressions': [{'key': 'b', 'operator': 'In', 'values': ['2']}]}
        self.assertTrue(selector_matches(selector, {'a': '1', 'b': '2'}))
        self.assertFalse(selector_matches(selector, {'a': '1', 'b': '3'}))
        self.assertFalse(selector_matches(selector, {'b': '2'}))

    def test_an_empty_selector_matches_everything(self):
        self.assertTrue(selector_matches({}, {}))
        self.assertTrue(selector_matches(None, {'x': 'y'}))

    def test_an_unknown_operator_is_an_error_not_a_match(self):
        with self.assertRaises(ValueError):
            selector_matches({'matchExpressions': [{'key': 'k', 'operator': 'Gt', 'values': ['1']}]}, {})


class MatrixTest(unittest.TestCase):
    def test_the_table_is_complete_and_consistent_with_its_own_rules(self):
        matrix = load_matrix()
        pairs = [(c['namespace'], c['pod']) for c in matrix['cases']]
        self.assertEqual(sorted(pairs), sorted((n, p) for n in matrix['namespaces'] for p in matrix['pods']))
        for case in matrix['cases']:
            with self.subTest(case=case):
                self.assertEqual(case['inject'], case['reasons'] == [])
                self.assertLessEqual(set(case['reasons']), REASONS)
                for name, labels in matrix['namespaces'].items():
                    self.assertEqual(labels['labels']['kubernetes.io/metadata.name'], name)


class InjectorSelectionTest(unittest.TestCase):
    def webhook(self, values=None):
        [hook] = find(documents(values), 'MutatingWebhookConfiguration', 'sinew-injector')['webhooks']
        return hook

    def test_selectors_and_conditions_match_every_row_of_the_table(self):
        matrix = load_matrix()
        for values in (None, CUSTOM):
            hook = self.webhook(values)
            for case in matrix['cases']:
                namespace = matrix['namespaces'][case['namespace']]
                pod = pod_object(matrix['pods'][case['pod']])
                with self.subTest(values=values is not None, namespace=case['namespace'], pod=case['pod']):
                    selected = (selector_matches(hook['namespaceSelector'], namespace['labels'])
                                and selector_matches(hook['objectSelector'], pod['metadata'].get('labels', {})))
                    self.assertEqual(selected, case['selectors'])
                    self.assertEqual(conditions_match(hook['matchConditions'], pod), case['conditions'])

    def test_the_api_server_calls_the_webhook_for_exactly_the_pods_the_injector_injects(self):
        # The table's own promise, given the test above: nothing injectable withheld, nothing
        # refusable sent (on API servers that evaluate matchConditions).
        for case in load_matrix()['cases']:
            with self.subTest(case=case):
                self.assertEqual(case['selectors'] and case['conditions'], case['inject'])

    def test_conditions_refuse_the_annotation_opt_out_and_host_network_pods(self):
        # The two rules labels cannot express, each shown to flip the conditions on its own.
        conditions = self.webhook()['matchConditions']
        plain = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'p'}, 'spec': {}}
        self.assertTrue(conditions_match(conditions, plain))
        for metadata, spec in [({'annotations': {'sinew.dev/inject': 'false'}}, {}),
                               ({}, {'hostNetwork': True})]:
            pod = {**plain, 'metadata': {**plain['metadata'], **metadata}, 'spec': spec}
            self.assertFalse(conditions_match(conditions, pod), pod)
        other = {**plain, 'metadata': {'annotations': {'sidecar.istio.io/inject': 'false'}},
                 'spec': {'hostNetwork': False}}
        self.assertTrue(conditions_match(conditions, other))


if __name__ == '__main__':
    unittest.main(verbosity=1)
