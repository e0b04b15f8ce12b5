"""Seconds per synthetic subject on one core (the generator alone, no file writing).

Run: taskset -c 0 .venv/bin/python benchmarks/bench_synthetic.py [--n 10] [--seed 42]
The first call, which loads the MNI152 templates, is timed separately.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

from brainseg.data.synthetic import SyntheticConfig, generate_subject

log = logging.getLogger("bench_synthetic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="subjects timed after the first")
    parser.add_argument("--seed", type=int, default=42, help="base seed")
    parser.add_argument("--domain-randomization", action="store_true",
                        help="time the domain-randomized variant")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = SyntheticConfig(domain_randomization=args.domain_randomization)
    start = time.perf_counter()
    generate_subject(args.seed, 0, config)
    log.info("first subject (loads templates): %.2f s", time.perf_counter() - start)
    times = []
    for index in range(1, args.n + 1):
        start = time.perf_counter()
        generate_subject(args.seed, index, config)
        times.append(time.perf_counter() - start)
    log.info("per subject over %d: min %.2f s, median %.2f s, max %.2f s (target < 2 s)",
             len(times), min(times), statistics.median(times), max(times))


if __name__ == "__main__":
    main()
