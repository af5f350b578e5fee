"""Seeded samples that keep each group's share: eval items by source document, closed-book
questions by source document."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence


def stratified_indices(groups: Sequence[str], k: int, seed: int) -> list[int]:
    """`k` indices into `groups`, drawn with `seed`, each group keeping its share (leftover
    slots to the largest remainders, ties broken by the seeded generator), in ascending order;
    all indices when there are no more than `k`."""
    if k >= len(groups):
        return list(range(len(groups)))
    rng = random.Random(seed)
    members: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    names = sorted(members)
    exact = {g: k * len(members[g]) / len(groups) for g in names}
    quota = {g: int(exact[g]) for g in names}
    order = sorted(names, key=lambda g: (rng.random(), g))
    order.sort(key=lambda g: exact[g] - quota[g], reverse=True)
    for g in order[: k - sum(quota.values())]:
        quota[g] += 1
    return sorted(i for g in names for i in rng.sample(members[g], quota[g]))
