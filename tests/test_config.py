"""The cluster configuration: the example parses; errors name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from configsvc.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_configuration_is_valid() -> None:
    config = load_config(ROOT / "examples" / "cluster.yaml")
    assert [n.id for n in config.nodes] == ["n1", "n2", "n3"]
    assert config.data_dir("n2") == Path("./data/n2")


def test_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("nodes:\n  - {id: n1, api_port: 70000, peer_port: 7601}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: nodes.0.api_port: "):
        load_config(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nodes": []}, "nodes"),
        ({"nodes": [{"id": "a", "api_port": 1, "peer_port": 2}] * 2}, "unique"),
        ({"nodes": [{"id": "a", "api_port": 1, "peer_port": 1}]}, "distinct"),
        ({"nodes": [{"id": "a", "api_port": 1, "peer_port": 2}], "timing": {"lease_duration": 0.6}},
         "lease_duration"),
        ({"nodes": [{"id": "a b", "api_port": 1, "peer_port": 2}]}, "nodes.0.id"),
        ({"nodes": [{"id": "a", "api_port": 1, "peer_port": 2}], "surprise": 1}, "surprise"),
    ],
)
def test_invalid_configurations_are_refused(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data, "c.yaml")


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "x.yaml").write_text("nodes: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "x.yaml")
