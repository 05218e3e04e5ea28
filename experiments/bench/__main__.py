"""``python -m experiments.bench [--quick]`` (``make bench``, ``make bench-quick``): the
speed benchmark of :mod:`experiments.bench.suite`."""

from experiments.bench.suite import main

if __name__ == "__main__":
    main()
