"""eval.jsonl reading and the maxItems sample: seeded, stratified by source document."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from llmft.workloads.evaluator.data import EvalItem, load_eval_items, stratified_sample


def _items(per_source: dict[str, int]) -> list[EvalItem]:
    return [
        EvalItem(f"{src}-{i}", f"Question {i} about {src}?", "Answer.", (), src)
        for src, n in per_source.items()
        for i in range(n)
    ]


def test_the_sample_keeps_each_documents_share() -> None:
    items = _items({"leave.md": 20, "sickness.md": 10, "travel.md": 10})
    sample = stratified_sample(items, 8, seed=1)
    assert len(sample) == 8
    assert Counter(i.source for i in sample) == {"leave.md": 4, "sickness.md": 2, "travel.md": 2}


def test_the_sample_is_reproducible_with_its_seed_and_changes_with_another() -> None:
    items = _items({"a.md": 30, "b.md": 30})
    assert stratified_sample(items, 10, seed=3) == stratified_sample(items, 10, seed=3)
    assert stratified_sample(items, 10, seed=3) != stratified_sample(items, 10, seed=4)


def test_the_sample_is_not_the_first_items_in_file_order_and_keeps_file_order() -> None:
    items = _items({"a.md": 25, "b.md": 25})
    sample = stratified_sample(items, 6, seed=0)
    assert sample != items[:6]
    positions = [items.index(i) for i in sample]
    assert positions == sorted(positions)
    assert {i.source for i in sample} == {"a.md", "b.md"}


def test_leftover_slots_go_to_the_largest_remainders() -> None:
    # 7 slots over 3/3/1 items: exact shares 3, 3, 1 -> every item.
    items = _items({"a.md": 3, "b.md": 3, "c.md": 1})
    assert stratified_sample(items, 7, seed=0) == items
    # 3 slots over 5/4/1: exact 1.5, 1.2, 0.3 -> 1 + 1 + 0, the leftover to a.md.
    items = _items({"a.md": 5, "b.md": 4, "c.md": 1})
    counts = Counter(i.source for i in stratified_sample(items, 3, seed=0))
    assert counts == {"a.md": 2, "b.md": 1}


def test_load_eval_items_reads_the_source_and_samples(tmp_path: Path) -> None:
    rows = [
        {"id": f"q{i}", "question": f"Q{i}?", "answer": "A.", "source": f"doc{i % 3}.md"}
        for i in range(9)
    ]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [i.source for i in load_eval_items(tmp_path)[:3]] == ["doc0.md", "doc1.md", "doc2.md"]
    sample = load_eval_items(tmp_path, max_items=3, seed=5)
    assert sorted(i.source for i in sample) == ["doc0.md", "doc1.md", "doc2.md"]
