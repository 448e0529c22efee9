"""One command log replayed through the strong state machine, for the determinism guard.

``generate_log(seed)`` builds a seeded log (slots of encoded commands) that
exercises every op kind of ``strong.ops.Op`` — keys, transactions, client
sessions with retries and stale sequences, session expiry, service instances,
namespaces, version changes — plus malformed entries. ``replay(log)`` applies
it to a fresh ``StateMachine`` and returns the state hash
(``strong.state_hash.state_hash``) and a SHA-256 over every result.

Run as a program (``python -m tests.determinism_replay LOG [--plant set-order]``)
it prints ``<state hash hex> <results hash hex> <applied index>``: the guard
(``tests/test_determinism_guard.py``) runs it in separate processes under
different ``PYTHONHASHSEED`` values and requires one answer.

``--plant set-order`` installs, in that process only, a deliberate
nondeterminism (``install_set_order_bug``): namespace creation also bumps the
revision by the length of whichever namespace name a ``set`` yields first —
the order of a set of strings follows the process's hash seed. The guard must
catch it.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import typing
from pathlib import Path

import msgpack

from strong.acl import (
    AclPolicy,
    AclRule,
    AclToken,
    DeleteAclPolicy,
    DeleteAclToken,
    SetAclPolicy,
    SetAclToken,
)
from strong.commands import (
    Command,
    Compare,
    CreateNamespace,
    Delete,
    DeleteNamespace,
    DeletePrefix,
    DeregisterInstance,
    ExpireInstances,
    ExpireSessions,
    Get,
    HashCheck,
    HashReport,
    ListInstances,
    Noop,
    Op,
    Put,
    Range,
    RegisterInstance,
    SetVersion,
    Txn,
    TxnOp,
    UpdateCheck,
    decode_command,
    encode_command,
)
from strong.results import encode_result
from strong.state_hash import state_hash
from strong.state_machine import StateMachine

Log = list[tuple[bytes, ...]]

#: names of different lengths, so the planted bug's choice shows in the revision
NAMESPACES = ("a", "bb", "ccc", "dddd", "ev")
EVENTUAL = "ev"
KEYS = (b"k", b"k1", b"k2", b"x", b"x/y")
CLIENTS = ("", "c1", "c2", "c3")
SERVICES = ("web", "db")
INSTANCES = ("1", "2")
STATUSES = ("passing", "warning", "critical")
POLICIES = ("p", "q")
TOKENS = ("t1", "t2")
JUNK = b"\xc1not a command"


class OpGenerator:
    """A seeded source of ops over a wall clock that moves forward."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = 1_000
        self.seqs = dict.fromkeys(CLIENTS, 0)
        self.clients = list(CLIENTS)

    def ns(self) -> str:
        return self.rng.choice(NAMESPACES)

    def key(self) -> bytes:
        return self.rng.choice(KEYS)

    def value(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, 3))

    def revision(self) -> int | None:
        return self.rng.choice([None, None, 0, 1, 3, 8])

    def txn_op(self) -> TxnOp:
        r = self.rng
        match r.randrange(5):
            case 0:
                return Put(self.ns(), self.key(), self.value(), r.randint(0, 2), self.revision())
            case 1:
                return Delete(self.ns(), self.key(), self.revision())
            case 2:
                return DeletePrefix(self.ns(), r.choice([b"", b"k", b"x/"]))
            case 3:
                return Get(self.ns(), self.key())
            case _:
                return Range(self.ns(), r.choice([b"", b"k"]), r.randint(0, 3))

    def compare(self) -> Compare:
        r = self.rng
        target = r.choice(["value", "mod_revision", "create_revision", "version"])
        operand: bytes | int = self.value() if target == "value" else r.randint(0, 6)
        return Compare(self.ns(), self.key(), target, r.choice(["==", "!=", "<", ">"]), operand)

    def op(self) -> Op:
        r = self.rng
        self.clock += r.randint(0, 400)
        now = self.clock - r.choice([0, 0, 500])  # now and then a lagging leader's clock
        svc, inst = r.choice(SERVICES), r.choice(INSTANCES)
        match r.randrange(21):
            case 0 | 1 | 2 | 3:
                return self.txn_op()
            case 4:
                return Txn(tuple(self.compare() for _ in range(r.randint(0, 2))),
                           tuple(self.txn_op() for _ in range(r.randint(0, 3))),
                           tuple(self.txn_op() for _ in range(r.randint(0, 2))))
            case 5:
                name = self.ns()
                eventual = (name == EVENTUAL) != (r.random() < 0.1)  # now and then a clash
                return CreateNamespace(name, "eventual" if eventual else "strong")
            case 6:
                return DeleteNamespace(self.ns()) if r.random() < 0.3 else Noop()
            case 7:
                return SetVersion(r.choice([1, 2, 3, 3, 4, 5]))
            case 8:
                return ExpireSessions(now, r.choice([5_000, 60_000]))
            case 9 | 10:
                return RegisterInstance(
                    self.ns(), svc, inst, "10.0.0.1", r.randint(1, 9), ("t",), (("m", "v"),),
                    "n1", b"", r.choice([0, 5_000]), r.choice([0, 10_000]), r.choice(STATUSES),
                    "", now)
            case 11:
                return UpdateCheck(self.ns(), svc, inst, r.choice(STATUSES), "out", now)
            case 12:
                return DeregisterInstance(self.ns(), svc, inst)
            case 13:
                return ExpireInstances(max(1, now))
            case 14:
                return ListInstances(self.ns(), r.choice(["", svc]))
            case 15 | 16 | 17 | 18:
                return self.acl_op(now)
            case 19:  # a replicated state-hash check and a report (strong.hash_check)
                check = r.randint(1, 3)
                if r.random() < 0.5:
                    return HashCheck(check)
                return HashReport(check, r.choice(["n1", "n2"]), bytes([r.randrange(256)]) * 32)
            case _:
                return Noop()

    def acl_op(self, now: int) -> Op:
        """ACL ops (version >= 4): links to missing policies, clashing secrets, expiry."""
        r = self.rng
        match r.randrange(4):
            case 0:
                rule = AclRule("key", r.choice(["", "a/"]), r.choice(["read", "write", "deny"]))
                return SetAclPolicy(AclPolicy(r.choice(POLICIES), "", (rule,)))
            case 1:
                return DeleteAclPolicy(r.choice(POLICIES))
            case 2:
                secret = hashlib.sha256(r.choice(TOKENS).encode()).digest()
                links = (r.choice(POLICIES),) if r.random() < 0.7 else ()
                token = AclToken(r.choice(TOKENS), secret, "", links, r.choice([0, now + 1_000]), now)
                return SetAclToken(token, max(0, now))
            case _:
                return DeleteAclToken(r.choice(TOKENS))

    def command(self) -> Command:
        """A command of a random client: a new sequence, a retry or a stale one.
        Now and then a new client replaces one (an expired client id stays expired)."""
        if self.rng.random() < 0.05:
            self.clients[self.rng.randrange(1, len(self.clients))] = f"c{len(self.seqs)}"
            self.seqs[f"c{len(self.seqs)}"] = 0
        client = self.rng.choice(self.clients)
        if client == "":
            return Command("", 0, self.op())
        roll = self.rng.random()
        seq = self.seqs[client]
        if roll < 0.8 or seq == 0:
            seq = self.seqs[client] = seq + 1
        elif roll < 0.9:
            seq = max(1, seq - 1)  # stale
        return Command(client, seq, self.op())  # else: a retry of the last sequence


def generate_log(seed: int, slots: int = 400) -> Log:
    """A seeded log: setup slots, then ``slots`` slots of up to four entries each."""
    gen = OpGenerator(seed)
    setup: Log = [
        tuple(encode_command(Command("", 0, CreateNamespace(n, "eventual" if n == EVENTUAL else "strong")))
              for n in (*NAMESPACES[:3], EVENTUAL)),
    ]
    log: Log = list(setup)
    for i in range(slots):
        if i == slots // 4:  # before it, service and expiry ops meet version 1
            log.append((encode_command(Command("", 0, SetVersion(3))),))
        if i == slots // 2:  # before it, ACL ops meet versions below 4
            log.append((encode_command(Command("", 0, SetVersion(4))),))
        if i == 3 * slots // 4:  # remembered reads migrate (strong.state_machine rule 11)
            log.append((encode_command(Command("", 0, SetVersion(5))),))
        batch = [encode_command(gen.command()) for _ in range(gen.rng.randint(1, 4))]
        if gen.rng.random() < 0.03:
            batch.insert(gen.rng.randrange(len(batch) + 1), JUNK)
        log.append(tuple(batch))
    return log


def op_kinds(log: Log) -> set[str]:
    """The names of the op types the log's well-formed commands hold (``Txn`` branches too)."""
    seen: set[str] = set()
    for batch in log:
        for data in batch:
            if data == JUNK:
                continue
            op = decode_command(data).op
            seen.add(type(op).__name__)
            if isinstance(op, Txn):
                seen.update(type(o).__name__ for o in (*op.success, *op.failure))
    return seen


def all_op_kinds() -> set[str]:
    """Every op type of ``strong.ops.Op``: a new op must join the generator."""
    return {t.__name__ for t in typing.get_args(Op)}


def replay(log: Log, sm: StateMachine | None = None) -> tuple[bytes, bytes, StateMachine]:
    """Apply ``log`` (from ``sm.applied_index + 1``): (state hash, results hash, machine)."""
    sm = sm if sm is not None else StateMachine()
    results = hashlib.sha256()
    for batch in log:
        for applied in sm.apply(sm.applied_index + 1, batch):
            results.update(msgpack.packb([applied.client_id, applied.seq, encode_result(applied.result)],
                                         use_bin_type=True))
    return state_hash(sm), results.digest(), sm


def install_set_order_bug() -> None:
    """Test only, this process only: make namespace creation depend on a set's order."""
    original = StateMachine._create_namespace

    def planted(self: StateMachine, op: CreateNamespace) -> typing.Any:
        result = original(self, op)
        first = next(iter(set(self._namespaces)))  # the nondeterminism: a set of strings
        self.revision += len(first)
        return result

    StateMachine._create_namespace = planted  # type: ignore[method-assign]


def write_log(log: Log, path: Path) -> None:
    path.write_bytes(msgpack.packb([list(b) for b in log], use_bin_type=True))


def read_log(path: Path) -> Log:
    return [tuple(b) for b in msgpack.unpackb(path.read_bytes(), raw=False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", type=Path)
    parser.add_argument("--plant", choices=["set-order"], default=None)
    args = parser.parse_args(argv)
    if args.plant == "set-order":
        install_set_order_bug()
    state, results, sm = replay(read_log(args.log))
    print(state.hex(), results.hex(), sm.applied_index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
