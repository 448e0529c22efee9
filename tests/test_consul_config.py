"""The Consul face's configuration: ports, and the discovery namespace created at bootstrap."""

from __future__ import annotations

from pathlib import Path

import pytest

from configsvc.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
NODE = {"id": "n1", "api_port": 1, "peer_port": 2}


def test_a_cluster_serving_the_consul_api_gets_its_services_namespace() -> None:
    config = parse_config({"nodes": [{**NODE, "consul_port": 3}]})
    assert [(ns.name, ns.consistency) for ns in config.namespaces] == [("services", "eventual")]
    strong = parse_config({"nodes": [{**NODE, "consul_port": 3}],
                           "consul": {"services_namespace": "svc", "services_consistency": "strong"}})
    assert [(ns.name, ns.consistency) for ns in strong.namespaces] == [("svc", "strong")]


def test_a_listed_services_namespace_keeps_its_own_settings_and_none_is_added_without_a_port() -> None:
    listed = parse_config({"nodes": [{**NODE, "consul_port": 3}],
                           "namespaces": [{"name": "services", "consistency": "strong"}]})
    assert [(ns.name, ns.consistency) for ns in listed.namespaces] == [("services", "strong")]
    assert parse_config({"nodes": [NODE]}).namespaces == []


@pytest.mark.parametrize(("data", "message"), [
    ({"nodes": [{**NODE, "consul_port": 2}]}, "distinct"),
    ({"nodes": [{**NODE, "consul_port": 70000}]}, "nodes.0.consul_port"),
    ({"nodes": [NODE], "consul": {"services_namespace": "bad name"}}, "services_namespace"),
    ({"nodes": [NODE], "consul": {"datacenter": ""}}, "datacenter"),
    ({"nodes": [NODE], "consul": {"surprise": 1}}, "surprise"),
])
def test_invalid_consul_settings_are_refused(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_the_example_configuration_serves_the_consul_api() -> None:
    config = load_config(ROOT / "examples" / "cluster.yaml")
    assert [n.consul_port for n in config.nodes] == [7701, 7702, 7703]
    assert config.consul.services_namespace == "services"
