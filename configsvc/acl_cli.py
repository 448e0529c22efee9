"""``configsvc acl token|policy ...``: ACL management from the command line.

    configsvc acl policy create NAME --rule key:app/:read --rule service::write
    configsvc acl policy list | read NAME | delete NAME
    configsvc acl token create --policy NAME [--description D] [--ttl SECONDS]
    configsvc acl token list | read ACCESSOR | delete ACCESSOR | self

A rule is ``RESOURCE:PREFIX:ACCESS`` (resource key, service, namespace or
acl; access read, write or deny; the prefix may itself hold ``:``). Like every
command that talks to a node, these take ``--endpoint`` and ``--token``
(default ``$CONFIGSVC_TOKEN``; ``configsvc.cli``'s ``endpoint`` helper adds
both). ``token create`` prints the new token's secret: it is not shown again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

__all__ = ["add_acl_parser", "parse_rule"]


def parse_rule(text: str) -> tuple[str, str, str]:
    """``RESOURCE:PREFIX:ACCESS`` as a triple; raises ``argparse.ArgumentTypeError``."""
    resource, sep, rest = text.partition(":")
    prefix, sep2, access = rest.rpartition(":")
    if not sep or not sep2:
        raise argparse.ArgumentTypeError(f"{text!r}: a rule is RESOURCE:PREFIX:ACCESS, e.g. key:app/:read")
    return resource, prefix, access


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _acl(args: argparse.Namespace) -> int:
    from configsvc.cli import _client

    with _client(args) as client:
        match args.acl_kind, args.acl_command:
            case "policy", "create":
                _print(client.acl_set_policy(args.name, args.rule, args.description))
            case "policy", "list":
                for policy in client.acl_policies():
                    print(f"{policy['name']}\t{len(policy['rules'])} rules\t{policy['description']}")
            case "policy", "read":
                _print(client.acl_policy(args.name))
            case "policy", "delete":
                client.acl_delete_policy(args.name)
                print(f"deleted policy {args.name}")
            case "token", "create":
                token = client.acl_create_token(args.policy, args.description, args.ttl)
                _print(token)
                print(f"secret (shown once): {token['secret']}")
            case "token", "list":
                for token in client.acl_tokens():
                    print(f"{token['accessor_id']}\t{','.join(token['policies'])}\t{token['description']}")
            case "token", "read":
                _print(client.acl_token(args.accessor_id))
            case "token", "self":
                _print(client.acl_token_self())
            case _:  # "token", "delete"
                client.acl_delete_token(args.accessor_id)
                print(f"deleted token {args.accessor_id}")
    return 0


def add_acl_parser(sub: Any, endpoint: Callable[[argparse.ArgumentParser], None]) -> None:
    acl = sub.add_parser("acl", help="ACL tokens and policies (docs/acl.md)")
    kinds = acl.add_subparsers(dest="acl_kind", required=True)
    policy = kinds.add_parser("policy", help="policies: named rule sets")
    psub = policy.add_subparsers(dest="acl_command", required=True)
    create = psub.add_parser("create", help="create or replace a policy")
    create.add_argument("name")
    create.add_argument("--rule", type=parse_rule, action="append", default=[],
                        metavar="RESOURCE:PREFIX:ACCESS", help="repeatable, e.g. key:app/:read")
    create.add_argument("--description", default="")
    commands = [create, psub.add_parser("list")]
    for name in ("read", "delete"):
        p = psub.add_parser(name)
        p.add_argument("name")
        commands.append(p)
    token = kinds.add_parser("token", help="tokens: secrets linking policies")
    tsub = token.add_subparsers(dest="acl_command", required=True)
    tcreate = tsub.add_parser("create", help="a new token; prints its secret once")
    tcreate.add_argument("--policy", action="append", default=[], help="repeatable; "
                         "global-management grants everything")
    tcreate.add_argument("--description", default="")
    tcreate.add_argument("--ttl", type=float, default=None, help="seconds until the token expires")
    commands += [tcreate, tsub.add_parser("list"), tsub.add_parser("self", help="the token in use")]
    for name in ("read", "delete"):
        p = tsub.add_parser(name)
        p.add_argument("accessor_id")
        commands.append(p)
    for p in commands:
        endpoint(p)
    acl.set_defaults(func=_acl)
