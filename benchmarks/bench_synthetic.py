"""Seconds per synthetic subject on one core (the generator alone, no file writing).

Run: taskset -c 0 .venv/bin/python -m benchmarks.bench_synthetic [--n 10] [--seed 42]
Results: section `synthetic` of benchmarks/results/latest.json.
The first call, which loads the MNI152 templates, is timed separately.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

from benchmarks.common import Figure, record, setup_logging
from brainseg.data.synthetic import SyntheticConfig, generate_subject

log = logging.getLogger("bench_synthetic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="subjects timed after the first")
    parser.add_argument("--seed", type=int, default=42, help="base seed")
    parser.add_argument("--domain-randomization", action="store_true",
                        help="time the domain-randomized variant")
    args = parser.parse_args()
    setup_logging()
    config = SyntheticConfig(domain_randomization=args.domain_randomization)
    start = time.perf_counter()
    generate_subject(args.seed, 0, config)
    first = time.perf_counter() - start
    log.info("first subject (loads templates): %.2f s", first)
    times = []
    for index in range(1, args.n + 1):
        start = time.perf_counter()
        generate_subject(args.seed, index, config)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    record("synthetic", [Figure(
        "synthetic.subject", "synthetic subject generation", median, "s/subject",
        target="< 2 s", met=median < 2.0, repeats=len(times),
        command="taskset -c 0 python -m benchmarks.bench_synthetic",
        note=f"one core, no file writing; min {min(times):.2f}, max {max(times):.2f} s; "
             f"first call {first:.1f} s (loads the MNI152 templates)",
        extra={"times": times, "first_s": first})])


if __name__ == "__main__":
    main()
