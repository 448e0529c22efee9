"""``configsvc snapshot save | inspect | restore``: backups and disaster recovery.

- ``save FILE``: ask a node for a backup (``GET /v1/cluster/snapshot``,
  ``configsvc.http.backup_api``), check it decodes, write it to
  ``FILE.part``, fsync, rename to ``FILE``, fsync the directory; print the
  index, size and SHA-256. A failed save leaves no ``FILE``.
- ``inspect FILE``: verify the checksum and the state, print what it holds.
- ``restore FILE --config C --node ID``: prepare that node's empty data
  directory from the file (``configsvc.restore``); offline.

Exit codes: 0 done; 1 the node could not be reached or refused (save); 2 the
file or the data directory was refused (nothing written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from configsvc.backup import BackupError, counts, decode_backup, file_digest

__all__ = ["add_parser", "save_file"]


def save_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably: ``path.part``, fsync, rename, fsync the directory."""
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(part, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _save(args: argparse.Namespace) -> int:
    from configsvc.cli import TOKEN_ENV
    from configsvc.client import tls_verify

    token = args.token or os.environ.get(TOKEN_ENV)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    url = args.endpoint.rstrip("/") + "/v1/cluster/snapshot"
    started = time.monotonic()
    try:
        response = httpx.get(url, headers=headers, timeout=args.timeout,
                             verify=tls_verify(args.ca_file))
    except httpx.HTTPError as exc:
        print(f"configsvc snapshot save: {url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"configsvc snapshot save: {url}: HTTP {response.status_code}: "
              f"{response.text[:300]}", file=sys.stderr)
        return 1
    data = response.content
    try:
        backup, _ = decode_backup(data)
    except BackupError as exc:
        print(f"configsvc snapshot save: the node sent a bad backup ({exc}); nothing written",
              file=sys.stderr)
        return 1
    path = Path(args.file)
    save_file(path, data)
    print(f"saved {path}: index {backup.applied_index}, {len(data)} bytes, "
          f"sha256 {file_digest(data)}, {time.monotonic() - started:.2f}s "
          f"(from {backup.node_id} of {backup.cluster_id})")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
        backup, state = decode_backup(data)
    except (OSError, BackupError) as exc:
        print(f"configsvc snapshot inspect: {args.file}: {exc}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "cluster_id": backup.cluster_id, "node_id": backup.node_id,
        "applied_index": backup.applied_index, "version": backup.version,
        "taken_at": datetime.fromtimestamp(backup.taken_at_ms / 1000, UTC).isoformat(),
        "size": len(data), "state_size": len(backup.state), "sha256": file_digest(data),
        **counts(state),
    }
    if args.keys:  # every strong key with its value (base64-free: as text where it decodes)
        report["kv"] = {
            info.name: {kv.key.decode(errors="replace"): kv.value.decode(errors="replace")
                        for kv in kvs}
            for info, kvs in state.namespaces if kvs is not None
        }
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        for name, value in report.items():
            if name != "kv":
                print(f"{name:20} {value}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from configsvc.config import ConfigError, load_config
    from configsvc.restore import RestoreError, restore

    try:
        config = load_config(args.config)
        data = Path(args.file).read_bytes()
        done = restore(config, args.node, data, force_cluster_id=args.force_cluster_id)
    except (ConfigError, OSError, RestoreError) as exc:
        print(f"configsvc snapshot restore: refused: {exc}", file=sys.stderr)
        return 2
    print(f"restored {args.node} into {done.data_dir}: index {done.backup.applied_index}, "
          f"version {done.backup.version}, voters {', '.join(done.voters)}. Restore every "
          "voter from this same file, then start them all.")
    return 0


def add_parser(sub: Any, endpoint: Callable[[argparse.ArgumentParser], None]) -> None:
    snap = sub.add_parser("snapshot", help="backups: save, inspect, restore (docs/backup.md)")
    ssub = snap.add_subparsers(dest="snapshot_command", required=True)
    save = ssub.add_parser("save", help="save a backup of the strong state from a running node")
    save.add_argument("file")
    save.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for it")
    endpoint(save)  # --token: a management token with ACLs on, else the admin token
    save.set_defaults(func=_save)
    inspect = ssub.add_parser("inspect", help="verify a backup file and print what it holds")
    inspect.add_argument("file")
    inspect.add_argument("--json", action="store_true")
    inspect.add_argument("--keys", action="store_true",
                         help="with --json: every strong key and its value too")
    inspect.set_defaults(func=_inspect)
    restore = ssub.add_parser(
        "restore", help="prepare a stopped node's empty data directory from a backup")
    restore.add_argument("file")
    restore.add_argument("--config", required=True)
    restore.add_argument("--node", required=True)
    restore.add_argument(
        "--force-cluster-id", action="store_true",
        help="restore a backup of another cluster id as this file's cluster (a copy)")
    restore.set_defaults(func=_restore)
