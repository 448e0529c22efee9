"""The HTTP APIs of a node (starlette): native JSON API; Consul-compatible API later."""
