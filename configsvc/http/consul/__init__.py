"""The Consul-compatible API (docs/consul.md): a second HTTP face of every node."""

from configsvc.http.consul.app import FACE, build_consul_app

__all__ = ["FACE", "build_consul_app"]
