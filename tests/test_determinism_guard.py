"""The determinism guard: one command log, replayed in separate processes under
different ``PYTHONHASHSEED`` values, ends in one state hash and one results hash.

A replica's state may depend on nothing but the log (``strong.state_machine``
rule 1). The likeliest way to break that in Python is to walk a ``set`` or a
``dict`` of strings whose order follows the process's hash seed; such a bug
agrees with itself inside one process and so escapes every in-process test.
Here each replay is its own interpreter (``tests/determinism_replay.py``).

The guard proves it can fail: the same replay with a planted set-order bug
(``--plant set-order``) gives different hashes under the same seeds.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from strong.results import ErrorResult
from strong.state_machine import StateMachine
from tests.determinism_replay import (
    all_op_kinds,
    generate_log,
    op_kinds,
    replay,
    write_log,
)

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ("0", "1", "12345")


def run_replay(log: Path, hash_seed: str, *plant: str) -> str:
    """``<state hash> <results hash> <applied index>`` from a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.determinism_replay", str(log), *plant],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("determinism") / "log.msgpack"
    write_log(generate_log(seed=7), path)
    return path


def test_the_log_exercises_every_op_kind_and_many_outcomes() -> None:
    log = generate_log(seed=7)
    assert op_kinds(log) == all_op_kinds()
    sm = StateMachine()
    outcomes: Counter[str] = Counter()
    acl_held = False
    for batch in log:
        for applied in sm.apply(sm.applied_index + 1, batch):
            result = applied.result
            outcomes[result.code if isinstance(result, ErrorResult) else type(result).__name__] += 1
        acl_held = acl_held or bool(sm.acl.state().tokens)
    # Writes that apply, and every family of refusal (rule 3), sessions included.
    assert {"PutResult", "DeleteResult", "TxnResult", "CasFailed", "NamespaceResult",
            "NamespaceDeleted", "ServiceWriteResult", "InstancesResult", "VersionResult",
            "session_expired", "stale_sequence", "malformed_command", "unsupported_in_version",
            "namespace_not_found", "wrong_consistency"} <= set(outcomes), outcomes
    assert sm.version == 5 and sm.revision > 50
    assert acl_held, "ACL ops applied too (version 4)"


@pytest.mark.slow
def test_replays_under_different_hash_seeds_agree(log_file: Path) -> None:
    here_state, here_results, sm = replay(generate_log(seed=7))
    expected = f"{here_state.hex()} {here_results.hex()} {sm.applied_index}"
    seeds = [*SEEDS, str(secrets.randbelow(2**32 - 1) + 2)]
    answers = {seed: run_replay(log_file, seed) for seed in seeds}
    assert set(answers.values()) == {expected}, answers


@pytest.mark.slow
def test_the_guard_catches_a_set_iterated_in_apply(log_file: Path) -> None:
    """Planted: namespace creation bumps the revision by the length of the first
    name a ``set`` yields. Under seeds 0, 1 and 12345 that first name differs."""
    answers = {seed: run_replay(log_file, seed, "--plant", "set-order") for seed in SEEDS}
    assert len({a.split()[0] for a in answers.values()}) > 1, answers
