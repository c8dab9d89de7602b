"""Every id-taking route, asked by another tenant with a real id: 404 in the envelope, nothing changed."""

from __future__ import annotations

from tests.hostile.isolation import id_routes, run_matrix


def test_matrix_covers_every_id_route(hostile_app):
    routes = id_routes(hostile_app)
    rules = {rule for _method, rule, _arg in routes}
    assert "/api/v1/calls/<string:call_id>/cancel" in rules
    assert len(routes) >= 9


def test_other_tenants_ids_answer_404_and_change_nothing(hostile_app, client, make_tenant):
    victim, attacker = make_tenant(), make_tenant()
    tried, failures = run_matrix(hostile_app, client, victim, attacker)
    assert tried == len(id_routes(hostile_app)), failures
    assert not failures, "\n".join(failures)
