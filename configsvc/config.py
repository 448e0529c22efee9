"""The cluster configuration: one YAML file, validated, every address explicit.

Example (``examples/cluster.yaml``)::

    cluster_id: demo
    data_root: ./data
    nodes:
      - {id: n1, host: 127.0.0.1, api_port: 7501, peer_port: 7601}
      - {id: n2, host: 127.0.0.1, api_port: 7502, peer_port: 7602}
      - {id: n3, host: 127.0.0.1, api_port: 7503, peer_port: 7603}
    namespaces:
      - {name: flags, consistency: strong}
      - {name: services, consistency: eventual}

``load_config`` raises ``ConfigError`` whose message names the file and each
offending field (``cluster.yaml: nodes.1.api_port: ...``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from strong.state_machine import SUPPORTED_VERSIONS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def valid_name(name: str) -> bool:
    """Node ids and namespace names: 1-63 letters, digits, '_', '.', '-' (no leading symbol)."""
    return bool(_NAME.match(name))


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeConfig(_Strict):
    id: str
    host: str = "127.0.0.1"
    api_port: int = Field(ge=1, le=65535)
    peer_port: int = Field(ge=1, le=65535)
    #: defaults to <data_root>/<id>
    data_dir: str | None = None
    #: where this node serves the Consul-compatible API (docs/consul.md); none if unset
    consul_port: int | None = Field(default=None, ge=1, le=65535)
    #: added after the cluster was created, by a membership change: it starts as
    #: a learner and votes once promoted (docs/membership.md)
    join: bool = False

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be 1-63 letters, digits, '_', '.', '-'")
        return v


class TimingConfig(_Strict):
    heartbeat_interval: float = Field(default=0.05, gt=0)
    election_timeout: float = Field(default=0.5, gt=0)
    lease_duration: float = Field(default=0.35, ge=0)
    max_drift: float = Field(default=0.01, ge=0, lt=0.5)
    #: how long a write may wait for its result before answering outcome_unknown
    request_timeout: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _lease(self) -> TimingConfig:
        if self.heartbeat_interval * 2 >= self.election_timeout:
            raise ValueError("election_timeout must exceed two heartbeat intervals")
        if self.lease_duration >= self.election_timeout * (1 - self.max_drift):
            raise ValueError("lease_duration must be < election_timeout * (1 - max_drift)")
        return self


class LimitsConfig(_Strict):
    """What one client may ask of a node (docs/limits.md: each limit, its default,
    and what a client sees past it). A client is its token (``X-Consul-Token`` or
    ``Authorization: Bearer``), or its IP address without one."""

    #: a key (413/400 key_too_long)
    key_max_bytes: int = Field(default=512, ge=1)
    #: a value (413 value_too_large)
    value_max_bytes: int = Field(default=512 * 1024, ge=1)
    #: a request body (413 body_too_large)
    body_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1)
    #: operations in one transaction, both APIs (413 too_many_operations)
    txn_max_ops: int = Field(default=128, ge=1)
    #: the longest a blocking read (``?wait=``) waits
    watch_max_seconds: float = Field(default=300.0, gt=0)
    #: blocking reads (``?index=``) one client may have open at once (429)
    watchers_per_client: int = Field(default=64, ge=1)
    #: requests per second one client may make, sustained (429 with Retry-After) ...
    rate_per_second: float = Field(default=2000.0, gt=0)
    #: ... and in a burst
    rate_burst: int = Field(default=4000, ge=1)
    #: open connections from one IP address, over both API ports (closed at once)
    connections_per_client: int = Field(default=256, ge=1)
    #: open connections in all, per API port (past it uvicorn answers 503)
    max_connections: int = Field(default=4096, ge=1)
    #: a request's headers must arrive within this many seconds of the connection
    #: opening or of the previous response (else the connection is closed)
    header_timeout: float = Field(default=10.0, gt=0)
    #: a request's whole body must arrive within this many seconds (408)
    body_timeout: float = Field(default=30.0, gt=0)
    #: an idle keep-alive connection is closed after this many seconds
    keep_alive_timeout: float = Field(default=5.0, gt=0)
    #: the request line and headers (h11's largest incomplete event; 431/400 past it)
    header_max_bytes: int = Field(default=16 * 1024, ge=1024)

    @model_validator(mode="after")
    def _caps(self) -> LimitsConfig:
        if self.connections_per_client > self.max_connections:
            raise ValueError("connections_per_client must not exceed max_connections")
        return self


class StorageConfig(_Strict):
    """When the strong store snapshots its state machine and compacts its log."""

    #: snapshot after this many slots applied since the last snapshot
    snapshot_every: int = Field(default=10_000, ge=1)
    #: or once the commands applied since then weigh this many bytes
    #: (``strong.config.ReplicaConfig.snapshot_log_bytes``)
    snapshot_log_bytes: int = Field(default=4 << 20, ge=1)


class SecurityConfig(_Strict):
    #: required by admin endpoints (fault injection); without it they are disabled
    admin_token: str | None = Field(default=None, min_length=16)
    #: shared secret peers prove with HMAC at connect time (docs/transport.md)
    peer_secret: str | None = Field(default=None, min_length=16)
    #: a file holding the peer secret (mode 0600; ``configsvc secret generate``)
    peer_secret_file: str | None = None
    #: start even with neither a peer secret nor mutual TLS: anyone who reaches a
    #: peer port can then speak for a node (tests and throwaway clusters only)
    insecure_peers: bool = False

    @model_validator(mode="after")
    def _one_secret(self) -> SecurityConfig:
        if self.peer_secret is not None and self.peer_secret_file is not None:
            raise ValueError("give peer_secret or peer_secret_file, not both")
        return self


class TlsFiles(_Strict):
    """PEM files of one TLS face; ``{node}`` in a path is replaced by the node id,
    so one configuration serves every node (``certs/{node}.pem``)."""

    #: the CA that signs the other side's certificates (peers: required)
    ca_file: str | None = None
    cert_file: str
    key_file: str


class ApiTlsFiles(TlsFiles):
    #: ask API clients for a certificate signed by ``ca_file`` (mutual TLS)
    verify_client: bool = False

    @model_validator(mode="after")
    def _ca(self) -> ApiTlsFiles:
        if self.verify_client and self.ca_file is None:
            raise ValueError("verify_client needs ca_file")
        return self


class PeerTlsFiles(TlsFiles):
    ca_file: str


class TlsConfig(_Strict):
    """TLS for the client APIs (native and Consul-compatible) and for peer traffic
    (mutual: both ends present a certificate signed by ``peers.ca_file`` naming
    their node id). Off unless given (``configsvc.security``)."""

    api: ApiTlsFiles | None = None
    peers: PeerTlsFiles | None = None


class StateMachineConfig(_Strict):
    #: the highest strong state-machine version the leader moves the group to,
    #: through the log (2 = client sessions expire; 3 = service instances in strong
    #: namespaces; 4 = ACL tokens and policies; 5 = reads are not remembered by client sessions). The leader
    #: moves only as far as every voter's binary supports (``configsvc.upgrade``):
    #: a rolling upgrade needs no change here; lower it to pin the group.
    version: int = Field(default=SUPPORTED_VERSIONS.stop - 1, ge=1,
                         le=SUPPORTED_VERSIONS.stop - 1)
    #: client dedup sessions idle longer than this (leader wall time) are dropped
    session_ttl: float = Field(default=3600.0, gt=0)
    #: how often the leader proposes the expiry command
    session_expiry_interval: float = Field(default=10.0, gt=0)
    #: how often (seconds) the leader proposes a cross-replica state-hash check
    #: (``strong.hash_check``); 0 = never. Each check hashes (and snapshots) the whole
    #: state on every replica: keep it well above the time that takes.
    hash_check_interval: float = Field(default=60.0, ge=0)


class AclConfig(_Strict):
    """ACL tokens and policies (docs/acl.md); off unless ``enabled``."""

    enabled: bool = False
    #: what a request may do that no rule of its token decides; the anonymous
    #: (no, unknown, expired or deleted token) request has no rules at all, so
    #: with "deny" it may do nothing
    default_policy: Literal["allow", "deny"] = "deny"
    #: a management token every node accepts (else $CONFIGSVC_ACL_BOOTSTRAP_TOKEN)
    bootstrap_token: str | None = Field(default=None, min_length=16)


class SelfPreservationConfig(_Strict):
    """When a node stops removing silent instances (docs/eventual.md, "Service
    instances and self-preservation"; ``eventual.health``)."""

    #: more than this fraction of the recently live TTL instances went silent at once
    fraction: float = Field(default=0.5, gt=0, lt=1)
    #: "recently live": heard from within this many seconds past their TTL
    window: float = Field(default=30.0, gt=0)
    #: never for fewer recently live instances than this
    min_instances: int = Field(default=3, ge=1)
    #: seconds after which silent instances are removed even if heartbeats did not resume
    max_duration: float = Field(default=900.0, gt=0)

    @model_validator(mode="after")
    def _bound(self) -> SelfPreservationConfig:
        if self.max_duration <= self.window:
            raise ValueError("max_duration must exceed window")
        return self


class EventualStoreConfig(_Strict):
    self_preservation: SelfPreservationConfig = Field(default_factory=SelfPreservationConfig)


class NamespaceSpec(_Strict):
    name: str
    consistency: Literal["strong", "eventual"]
    #: eventual namespaces: "mvr" (multi-value register, default) or "lww" (lossy)
    merge: Literal["mvr", "lww"] = "mvr"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be 1-63 letters, digits, '_', '.', '-'")
        return v


class ConsulConfig(_Strict):
    """The Consul-compatible API (served on each node's ``consul_port``)."""

    #: the datacenter it reports, and the only one ``?dc=`` may name
    datacenter: str = "dc1"
    #: the discovery namespace of its service endpoints (``?ns=`` picks another);
    #: when a node serves the API and ``namespaces`` does not list it, it is
    #: created at bootstrap with ``services_consistency``
    services_namespace: str = "services"
    services_consistency: Literal["strong", "eventual"] = "eventual"

    @field_validator("services_namespace", "datacenter")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be 1-63 letters, digits, '_', '.', '-'")
        return v


class HealthConfig(_Strict):
    """Thresholds of health reasons (``configsvc.health_report``, docs/operations.md)."""

    #: a strong replica further behind the leader's commit index gets a ``replica_lag`` reason
    lag_entries: int = Field(default=1000, ge=0)
    #: a gossip peer missing more of a node's events gets a ``gossip_lag`` reason
    gossip_lag_events: int = Field(default=1000, ge=0)
    #: peers' reports (digests, ``/v1/cluster/status``) older than this are asked again
    peer_report_max_age: float = Field(default=1.0, gt=0)


class ClusterConfig(_Strict):
    cluster_id: str = "configsvc"
    data_root: str = "./data"
    nodes: list[NodeConfig] = Field(min_length=1)
    timing: TimingConfig = Field(default_factory=TimingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    state_machine: StateMachineConfig = Field(default_factory=StateMachineConfig)
    eventual: EventualStoreConfig = Field(default_factory=EventualStoreConfig)
    namespaces: list[NamespaceSpec] = []
    consul: ConsulConfig = Field(default_factory=ConsulConfig)
    acl: AclConfig = Field(default_factory=AclConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)

    @model_validator(mode="after")
    def _unique(self) -> ClusterConfig:
        ids = [n.id for n in self.nodes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"node ids must be unique: {ids}")
        addresses = [(n.host, p) for n in self.nodes for p in (n.api_port, n.peer_port, n.consul_port) if p]
        if len(set(addresses)) != len(addresses):
            raise ValueError("every api_port, peer_port and consul_port must be distinct per host")
        names = [ns.name for ns in self.namespaces]
        if len(set(names)) != len(names):
            raise ValueError(f"namespace names must be unique: {names}")
        return self

    @model_validator(mode="after")
    def _acl_version(self) -> ClusterConfig:
        if self.acl.enabled and self.state_machine.version < 4:
            raise ValueError("acl.enabled needs state_machine.version 4 or later")
        return self

    @model_validator(mode="after")
    def _consul_services(self) -> ClusterConfig:
        """A cluster serving the Consul API creates its discovery namespace at bootstrap."""
        services = self.consul.services_namespace
        if any(n.consul_port for n in self.nodes) and services not in {ns.name for ns in self.namespaces}:
            spec = NamespaceSpec(name=services, consistency=self.consul.services_consistency)
            object.__setattr__(self, "namespaces", [*self.namespaces, spec])
        return self

    def node(self, node_id: str) -> NodeConfig:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise ConfigError(f"node {node_id!r} is not in the configuration ({[n.id for n in self.nodes]})")

    def data_dir(self, node_id: str) -> Path:
        node = self.node(node_id)
        return Path(node.data_dir) if node.data_dir else Path(self.data_root) / node_id


def parse_config(data: object, source: str = "<config>") -> ClusterConfig:
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"{source}: {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def load_config(path: str | Path) -> ClusterConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, str(path))
