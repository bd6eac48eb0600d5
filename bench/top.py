"""Summarize py-spy collapsed stacks: the functions where samples land (self) and the ones
they pass through (total), per thread.   python -m bench.top FILE [--n 25]"""

from __future__ import annotations

import argparse
import collections


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--n", type=int, default=25)
    a = p.parse_args()
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    n = 0
    for line in open(a.file):
        stack, _, count = line.rstrip().rpartition(" ")
        c = int(count)
        frames = stack.split(";")
        n += c
        threads[frames[0]] += c
        own[frames[-1]] += c
        for f in set(frames[1:]):
            total[f] += c
    print(f"{n} samples")
    for t, c in threads.most_common():
        print(f"  {100 * c / n:5.1f}%  {t}")
    print("self:")
    for f, c in own.most_common(a.n):
        print(f"  {100 * c / n:5.1f}%  {f}")
    print("total:")
    for f, c in total.most_common(a.n):
        print(f"  {100 * c / n:5.1f}%  {f}")


if __name__ == "__main__":
    main()
