"""Property-based tests of the split: deterministic, leak-free, ratios within tolerance."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from preceptor.engine import events
from preceptor.engine.ingest.prompts import ImportOptions, import_prompts
from preceptor.engine.ingest.splits import hash_split

ratios = st.tuples(st.floats(0.0, 0.45), st.floats(0.0, 0.45))


@given(group=st.text(min_size=1, max_size=40), seed=st.integers(0, 2**31), r=ratios)
def test_split_is_deterministic(group, seed, r):
    assert hash_split(group, seed, *r) == hash_split(group, seed, *r)
    assert hash_split(group, seed, *r) in ("train", "val", "test")


@given(seed=st.integers(0, 10_000), r=ratios)
@settings(max_examples=25, deadline=None)
def test_ratios_within_tolerance(seed, r):
    val, test = r
    n = 4000
    splits = [hash_split(f"group-{i}", seed, val, test) for i in range(n)]
    # 4 standard deviations of a binomial proportion at n = 4000 is under 0.032
    assert abs(splits.count("val") / n - val) < 0.032
    assert abs(splits.count("test") / n - test) < 0.032


@given(rows=st.lists(st.tuples(st.integers(0, 15), st.text(min_size=1, max_size=12)), min_size=1, max_size=60),
       seed=st.integers(0, 1000), r=ratios)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_group_spans_two_splits(project, tmp_path_factory, rows, seed, r):
    path = tmp_path_factory.mktemp("split") / "rows.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"{text} #{i}", "drug": f"d{g}"}) + "\n" for i, (g, text) in enumerate(rows)))
    events.run(import_prompts(project, path, ImportOptions(group_col="drug", val_ratio=r[0], test_ratio=r[1], seed=seed,
                                                            collection=path.parent.name)))
    seen = {}
    for group, split in project.store.all("SELECT group_key, split FROM prompts"):
        assert seen.setdefault(group, split) == split
