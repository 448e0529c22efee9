"""The ``configsvc`` command: one entry point for every tool."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence


def _sim(args: argparse.Namespace) -> int:
    from configsvc.sim.runner import run_seeds

    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    module = importlib.import_module(f"configsvc.sim.{args.store}_sim")
    summary = run_seeds(args.store, module.run_seed, seeds, as_json=args.json, fold=module.FOLD)
    return 1 if summary.failures else 0


def _demo(args: argparse.Namespace) -> int:
    demo = importlib.import_module("configsvc.demo")
    code: int = demo.main()
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="configsvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="run the deterministic simulator over many seeds")
    sim.add_argument("store", choices=["strong", "eventual"])
    sim.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    sim.add_argument("--start", type=int, default=0, help="first seed")
    sim.add_argument("--seed", type=int, default=None, help="replay exactly this seed")
    sim.add_argument("--json", action="store_true", help="last line: one JSON summary")
    sim.set_defaults(func=_sim)

    demo = sub.add_parser("demo", help="the best demonstration available")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
