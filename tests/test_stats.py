"""Statistics on hand-worked examples, against scipy / scikit-learn, and on judged projects."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from preceptor.engine.results import stats
from preceptor.engine.results.stats import StatsOptions, compute
from preceptor.errors import PreceptorError
from tests.test_stats_support import Judged

FAST = dict(n_boot=200, seed=0)


def _no_nan(result: dict) -> None:
    json.dumps(result, allow_nan=False)  # raises on NaN / inf anywhere


# -- pure functions ---------------------------------------------------------------------------

@pytest.mark.parametrize("k,n", [(8, 10), (0, 7), (7, 7), (1, 1), (37, 120)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    from scipy.stats import binomtest

    lo, hi = stats.wilson(k, n)
    ref = binomtest(k, n).proportion_ci(method="wilson")
    assert lo == pytest.approx(ref.low, abs=1e-9)
    assert hi == pytest.approx(ref.high, abs=1e-9)


def test_wilson_hand_worked_and_empty() -> None:
    # 8/10: centre (0.8 + 1.92/10)/1.384 = 0.7168, half-width 0.2265
    lo, hi = stats.wilson(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    assert stats.wilson(0, 0) is None


def test_figure_says_n_too_small() -> None:
    f = stats.figure(0.75, 3, (0.3, 0.95), method="wilson", min_n=5)
    assert f["value"] is None and f["ci"] is None
    assert f["note"] == "n too small (n=3 < 5)"
    g = stats.figure(float("nan"), 10, min_n=5)
    assert g["value"] is None and g["note"] == "undefined"


def test_kappa_hand_worked() -> None:
    # po = 3/4, pe = 0.5*0.25 + 0.5*0.75 = 0.5 -> kappa = 0.5
    assert stats.cohen_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.5)
    assert stats.cohen_kappa(["a", "a"], ["a", "a"]) is None  # no variation: undefined, not NaN
    assert stats.cohen_kappa([], []) is None


def test_kappa_matches_sklearn_on_random_labels() -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    cats = ["a", "b", "tie", "both_bad"]
    for _ in range(5):
        a = list(rng.choice(cats, size=60))
        b = [x if rng.random() < 0.6 else str(rng.choice(cats)) for x in a]
        assert stats.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
        assert stats._kappa_fast(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)  # the bootstrap's


def test_agreement_figure_has_ci_and_n() -> None:
    a = ["a", "b"] * 10
    b = ["a", "b"] * 8 + ["b", "a"] * 2
    res = stats.agreement(a, b, n_boot=200, seed=1, min_n=5)
    assert res["n"] == 20
    assert res["raw"]["value"] == pytest.approx(16 / 20)
    assert res["kappa"]["value"] == pytest.approx(0.6)
    lo, hi = res["kappa"]["ci"]
    assert lo <= 0.6 <= hi


def test_bt_two_systems_matches_closed_form() -> None:
    # 3 wins to 1: MLE of θ1 − θ2 is ln 3 (the tiny ridge moves it by < 1 %)
    theta = stats.bt_fit(np.array([[0.0, 3.0], [1.0, 0.0]]))
    assert theta[0] - theta[1] == pytest.approx(math.log(3), rel=0.01)
    assert theta.sum() == pytest.approx(0.0, abs=1e-9)


def test_bt_recovers_known_ordering_from_simulated_votes() -> None:
    rng = np.random.default_rng(0)
    true = {"teacher": 1.5, "dpo": 0.6, "ft": -0.3, "base": -1.8}
    names = sorted(true)
    n_prompts = 150
    t = np.zeros((n_prompts, 4, 4))
    for p in range(n_prompts):
        for _ in range(3):
            i, j = rng.choice(4, size=2, replace=False)
            pi = 1 / (1 + math.exp(true[names[j]] - true[names[i]]))
            if rng.random() < pi:
                t[p, i, j] += 1
            else:
                t[p, j, i] += 1
    league = stats.bt_league(names, t, n_boot=100, seed=0, min_n=5)
    assert [r["system"] for r in league["rows"]] == ["teacher", "dpo", "ft", "base"]
    # the true (centred) strengths fall inside the bootstrap intervals
    centre = np.mean(list(true.values()))
    for r in league["rows"]:
        lo, hi = r["strength"]["ci"]
        assert lo - 0.25 <= true[r["system"]] - centre <= hi + 0.25
    assert league["n"] == n_prompts * 3 and league["note"] is None
    assert league["systems"] == names and all(r["comparisons"] > 0 for r in league["rows"])


def test_bt_degenerate_cases_never_raise() -> None:
    one = stats.bt_league(["base"], np.zeros((3, 1, 1)), n_boot=50, seed=0, min_n=5)
    assert one["note"] == "needs at least two systems compared" and one["rows"] == []
    ties = np.zeros((6, 2, 2))
    ties[:, 0, 1] = ties[:, 1, 0] = 0.5
    league = stats.bt_league(["a", "b"], ties, n_boot=50, seed=0, min_n=5)
    assert [r["strength"]["value"] for r in league["rows"]] == pytest.approx([0.0, 0.0], abs=1e-6)
    sweep = np.zeros((20, 2, 2))
    sweep[:, 0, 1] = 1  # "teacher wins 20/20": finite rating thanks to the ridge
    league = stats.bt_league(["teacher", "ft"], sweep, n_boot=50, seed=0, min_n=5)
    _no_nan(league)
    assert league["rows"][0]["system"] == "teacher" and league["rows"][0]["strength"]["value"] > 1


def test_options_validated() -> None:
    with pytest.raises(PreceptorError, match="--judge 'human' is not one of all, expert, llm, metric, imported"):
        StatsOptions(judge="human")
    with pytest.raises(PreceptorError, match="--by 'system' is not supported"):
        StatsOptions(by="system")


# -- on judged projects -----------------------------------------------------------------------

def _texts(i: int) -> dict[str, str]:
    return {"base": f"short {i}", "ft": f"a longer answer number {i} from the fine-tuned model"}


def test_win_rates_count_ties_separately_supersedes_once_repeats_never(project) -> None:
    j = Judged(project)
    for i in range(6):
        pid = j.prompt()
        pair, outs = j.pair(pid, _texts(i))
        if i < 4:
            first = j.vote(pair, outs, "base")
            if i == 0:  # changed mind: only the newest of the chain counts
                j.vote(pair, outs, "ft", supersedes=first)
            j.vote(pair, outs, "ft", repeat=True)  # self-consistency sample: never counted here
        elif i == 4:
            j.vote(pair, outs, None, verdict="tie")
        else:
            j.vote(pair, outs, None, verdict="both_bad")
    res = compute(project, StatsOptions(**FAST, min_n=3))
    _no_nan(res)
    [row] = res["win_rates"]
    assert (row["system_1"], row["system_2"]) == ("base", "ft")
    assert (row["wins_1"], row["wins_2"], row["ties"], row["both_bad"], row["votes"]) == (3, 1, 1, 1, 6)
    wr = row["win_rate_1"]
    assert wr["value"] == pytest.approx(0.75) and wr["n"] == 4 and wr["method"] == "wilson"
    assert wr["ci"] == pytest.approx(list(stats.wilson(3, 4)))
    assert res["n_votes"] == 6 and res["n_repeat_votes"] == 4


def test_small_n_single_vote_and_single_system(project) -> None:
    res = compute(project, StatsOptions(**FAST))
    _no_nan(res)
    assert res["win_rates"] == [] and res["bradley_terry"] == {} and res["note"] == "no judgments in this selection"
    j = Judged(project)
    pair, outs = j.pair(j.prompt(), _texts(0))
    j.vote(pair, outs, None, verdict="tie")
    pair2, outs2 = j.pair(j.prompt(), _texts(1))
    j.vote(pair2, outs2, None, verdict="inconsistent", kind="llm", judge="gpt")
    res = compute(project, StatsOptions(**FAST))
    _no_nan(res)
    llm = next(r for r in res["win_rates"] if r["judge"] == "llm")
    assert (llm["inconsistent"], llm["votes"], llm["win_rate_1"]["n"]) == (1, 1, 0)
    wr = res["win_rates"][0]["win_rate_1"]
    assert wr["value"] is None and wr["n"] == 0 and wr["note"] == "n too small (0 prompts < 5)"
    league = res["bradley_terry"]["expert"]
    assert league["note"] == "n too small (n=1 < 5)"
    assert all(r["strength"]["value"] is None for r in league["rows"])


def test_by_task_and_clustered_votes_use_bootstrap(project) -> None:
    j = Judged(project)
    for i in range(24):
        pair, outs = j.pair(j.prompt(task="ddi" if i % 2 else "moa"), _texts(i))
        for judge in ("ann", "bob"):
            j.vote(pair, outs, "ft" if i % 4 else "base", judge=judge)
    res = compute(project, StatsOptions(by="task", **FAST, min_n=2))
    rows = {r["task"]: r for r in res["win_rates"]}
    assert set(rows) == {"ddi", "moa"}
    assert rows["moa"]["wins_1"] == 12 and rows["moa"]["wins_2"] == 12  # base wins i = 0, 4, 8, ... (2 judges each)
    assert rows["moa"]["win_rate_1"]["method"] == "bootstrap over prompts"
    assert rows["moa"]["win_rate_1"]["prompts"] == 12
    ddi = rows["ddi"]["win_rate_1"]
    assert ddi["value"] == 0.0
    # one-sided votes: the bootstrap collapses to [0, 0], so the score interval is shown instead
    assert ddi["method"].startswith("wilson") and ddi["ci"][1] > ddi["ci"][0]


def test_few_clustered_prompts_never_get_a_zero_width_interval(project) -> None:
    from preceptor.engine.intervals import wilson

    j = Judged(project)
    for i in range(2):  # 6 votes on two prompts, all one way
        pair, outs = j.pair(j.prompt(), _texts(i))
        for judge in ("ann", "bob", "cy"):
            j.vote(pair, outs, "ft", judge=judge)
    res = compute(project, StatsOptions(**FAST, min_n=1))
    wr = res["win_rates"][0]["win_rate_1"]
    assert wr["value"] in (0.0, 1.0) and wr["prompts"] == 2 and wr["n"] == 6
    lo, hi = wilson(6 * wr["value"], 6)
    assert wr["ci"] == [pytest.approx(lo), pytest.approx(hi)] and hi - lo > 0.3
    assert "wilson" in wr["method"]
    assert compute(project, StatsOptions(**FAST, min_n=5))["win_rates"][0]["win_rate_1"]["note"] == \
        "n too small (2 prompts < 5)"  # min_n counts prompts, not votes


def test_split_and_collection_selection(project) -> None:
    j = Judged(project)
    for split in ("train", "val", "test"):
        pair, outs = j.pair(j.prompt(split=split), _texts(0))
        j.vote(pair, outs, "ft")
    pair, outs = j.pair(j.prompt(collection="labels", kind="judgments"), _texts(1))
    j.vote(pair, outs, "base", kind="imported", judge="annotator1")
    pair, outs = j.pair(j.prompt(bad="wrong reference"), _texts(2))
    j.vote(pair, outs, "base")
    assert compute(project, StatsOptions(**FAST))["n_votes"] == 2  # val + test, own collections, no bad items
    assert compute(project, StatsOptions(split="all", **FAST))["n_votes"] == 3
    named = compute(project, StatsOptions(split="all", collection="labels", **FAST))
    assert named["n_votes"] == 1 and named["judges"] == {"imported": ["annotator1"]}
    with pytest.raises(PreceptorError, match="no collection named 'nope'"):
        compute(project, StatsOptions(collection="nope"))


def test_agreement_self_consistency_and_biases(project) -> None:
    j = Judged(project)
    ann_labels, bob_labels = [], []
    for i in range(12):
        pair, outs = j.pair(j.prompt(), _texts(i))
        a = "ft" if i % 3 else "base"
        b = a if i < 9 else ("base" if a == "ft" else "ft")
        j.vote(pair, outs, a, judge="ann", left="base")
        j.vote(pair, outs, b, judge="bob", left="ft")
        if i < 6:  # ann's repeat sample, shown swapped: agrees except once
            j.vote(pair, outs, a if i else ("ft" if a == "base" else "base"), judge="ann", repeat=True, left="ft")
        # the LLM judge asked both orders: on 6 pairs it picked base both times, on 6 it picked the left answer
        if i < 6:
            j.vote(pair, outs, "base", kind="llm", judge="gpt", left="base", confidence=0.9,
                   orders=(("base", "A"), ("ft", "B")))
        else:
            j.vote(pair, outs, None, verdict="inconsistent", kind="llm", judge="gpt", left="base", confidence=0.0,
                   orders=(("base", "A"), ("ft", "A")))
        ann_labels.append(a)
        bob_labels.append(b)
    res = compute(project, StatsOptions(**FAST))
    _no_nan(res)
    rows = {(r["rater_1"], r["rater_2"]): r for r in res["agreement"]["raters"]}
    ee = rows[("expert:ann", "expert:bob")]
    assert ee["comparison"] == "expert-expert" and ee["overlap"] == 12
    assert ee["with_ties"]["raw"]["value"] == pytest.approx(9 / 12)
    assert ee["with_ties"]["kappa"]["value"] == pytest.approx(stats.cohen_kappa(ann_labels, bob_labels))
    el = rows[("expert:ann", "llm:gpt")]
    assert el["comparison"] == "expert-llm" and el["overlap"] == 12
    # inconsistent LLM verdicts are no labels: 6 pairs compared
    assert el["without_ties"]["n"] == 6
    assert el["without_ties"]["raw"]["value"] == pytest.approx(sum(x == "base" for x in ann_labels[:6]) / 6)
    # the LLM never varies, so its agreement is all chance: kappa 0 (as scikit-learn has it)
    assert el["without_ties"]["kappa"]["value"] == pytest.approx(0.0)
    [sc] = res["agreement"]["self_consistency"]
    assert sc["rater"] == "expert:ann" and sc["n"] == 6 and sc["raw"]["value"] == pytest.approx(5 / 6)
    pos = {r["rater"]: r for r in res["bias"]["position"]}
    # 24 orders: base-base pairs give 1 left win of 2, left-left pairs 2 of 2 -> 18/24
    assert pos["llm:gpt"]["first_position_preference"]["value"] == pytest.approx(18 / 24)
    assert pos["llm:gpt"]["first_position_preference"]["n"] == 24
    assert pos["llm:gpt"]["position_consistency"]["value"] == pytest.approx(0.5)
    assert pos["llm:gpt"]["position_consistency"]["n"] == 12
    # ann's repeat sample was shown swapped: her verdict survived the swap 5 times out of 6
    assert pos["expert:ann"]["position_consistency"]["n"] == 6
    assert pos["expert:ann"]["position_consistency"]["value"] == pytest.approx(5 / 6)
    assert pos["expert:bob"]["position_consistency"]["note"] == "no pair judged in both orders"
    length = {r["judge"]: r["longer_wins"] for r in res["bias"]["length"]}
    # ft's answer is the longer one; experts: ann + bob over 12 pairs
    expert_ft = sum(x == "ft" for x in ann_labels) + sum(x == "ft" for x in bob_labels)
    assert length["expert"]["value"] == pytest.approx(expert_ft / 24)
    assert length["llm"]["value"] == 0.0 and length["llm"]["n"] == 6


def test_metric_vs_expert(project) -> None:
    j = Judged(project)
    truth = []
    for i in range(10):
        pair, outs = j.pair(j.prompt(), _texts(i))
        winner = "ft" if i < 7 else "base"
        j.vote(pair, outs, winner)
        # rougeL always prefers ft; bleu is tied once
        j.metric(outs["ft"], "rougeL", 0.6)
        j.metric(outs["base"], "rougeL", 0.2)
        j.metric(outs["ft"], "bleu", 0.3 if i else 0.1)
        j.metric(outs["base"], "bleu", 0.1)
        truth.append(winner)
    res = compute(project, StatsOptions(**FAST))
    rows = {r["metric"]: r for r in res["metric_vs_expert"]}
    assert rows["rougeL"]["agrees_with_experts"]["value"] == pytest.approx(0.7)
    assert rows["rougeL"]["agrees_with_experts"]["ci"] == pytest.approx(list(stats.wilson(7, 10)))
    assert rows["bleu"]["metric_ties"] == 1 and rows["bleu"]["agrees_with_experts"]["n"] == 9


# -- the PandaLM cross-check ------------------------------------------------------------------

def _load_pandalm(project, rows: list[dict]) -> None:
    """The PandaLM items as a judgments collection, inserted through the db layer the way the
    importer stores them (0 tie, 1 response1, 2 response2; a missing label is no vote)."""
    j = Judged(project)
    prompts: dict[str, int] = {}
    for r in rows:
        text = r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")
        if text not in prompts:
            prompts[text] = j.prompt(text, split="test", collection="pandalm", kind="judgments")
        s1, s2 = (f"pandalm:{s}" for s in r["cmp_key"].split("_", 1))
        pair, outs = j.pair(prompts[text], {s1: r["response1"] or "(empty)", s2: r["response2"] or "(empty)"})
        for ann in ("annotator1", "annotator2", "annotator3"):
            if not _missing(r[ann]):
                j.vote(pair, outs, {1: s1, 2: s2}.get(r[ann]), verdict="tie", kind="imported", judge=f"pandalm/{ann}",
                       left=s1)


def _check_pandalm_kappas(project, rows: list[dict]) -> None:
    from sklearn.metrics import cohen_kappa_score

    default = compute(project, StatsOptions(n_boot=0))  # left out of the default selection, so it falls back, saying so
    assert default["fallback"] == ["pandalm"] and "imported collection pandalm" in default["fallback_note"]
    assert default["floors"]["n"] > 0
    res = compute(project, StatsOptions(split="all", collection="pandalm", n_boot=0))
    _no_nan(res)
    got = {(r["rater_1"], r["rater_2"]): r for r in res["agreement"]["raters"]}
    assert len(got) == 3
    for x, y in (("annotator1", "annotator2"), ("annotator1", "annotator3"), ("annotator2", "annotator3")):
        both = [r for r in rows if not _missing(r[x]) and not _missing(r[y])]
        ref_with = cohen_kappa_score([r[x] for r in both], [r[y] for r in both])
        decisive = [r for r in both if r[x] and r[y]]
        ref_without = cohen_kappa_score([r[x] for r in decisive], [r[y] for r in decisive])
        row = got[(f"imported:pandalm/{x}", f"imported:pandalm/{y}")]
        assert row["comparison"] == "imported-imported"
        assert row["with_ties"]["n"] == len(both) and row["without_ties"]["n"] == len(decisive)
        assert round(row["with_ties"]["kappa"]["value"], 3) == round(ref_with, 3)
        assert round(row["without_ties"]["kappa"]["value"], 3) == round(ref_without, 3)
        assert row["with_ties"]["raw"]["value"] == pytest.approx(sum(r[x] == r[y] for r in both) / len(both))


def _pandalm_rows():
    from pathlib import Path

    from preceptor.engine.ingest.readers import read_json_array

    path = Path(__file__).parent / "fixtures" / "pandalm_excerpt.json"
    rows = [rec for _, rec in read_json_array(path)]  # holds a bare NaN label (no vote)
    assert len([r for r in rows if any(_missing(r[f"annotator{k}"]) for k in (1, 2, 3))]) == 1
    return path, rows


def test_pandalm_annotator_kappas_equal_sklearn(project) -> None:
    """scikit-learn runs on the raw file. PandaLM's labels are 1 = response1, 2 = response2
    with the cmp_key systems in name order, the orientation preceptor's kappa uses, so no
    relabelling is needed."""
    _, rows = _pandalm_rows()
    _load_pandalm(project, rows)
    _check_pandalm_kappas(project, rows)


def test_pandalm_kappas_through_import_judgments(project) -> None:
    """The same cross-check on the file imported by `preceptor import-judgments --format pandalm`."""
    from preceptor.engine.events import run
    from preceptor.engine.judging.imported import ImportJudgmentsOptions, import_judgments

    path, rows = _pandalm_rows()
    run(import_judgments(project, path, ImportJudgmentsOptions(format="pandalm", collection="pandalm")))
    _check_pandalm_kappas(project, rows)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def test_bradley_terry_interval_widens_under_complete_separation(project) -> None:
    j = Judged(project)
    for i in range(8):  # ft wins every comparison, one vote per prompt
        pair, outs = j.pair(j.prompt(), _texts(i))
        j.vote(pair, outs, "ft")
    league = compute(project, StatsOptions(**FAST, min_n=1))["bradley_terry"]["expert"]
    for row in league["rows"]:
        lo, hi = row["elo"]["ci"]
        assert hi - lo > 100  # every bootstrap replicate is the same; the prior's interval is not
        assert lo < row["elo"]["value"] < hi
        assert "ridge-penalised" in row["elo"]["method"]


def _intervals(node, path="res"):
    if isinstance(node, dict):
        if isinstance(node.get("ci"), list) and len(node["ci"]) == 2:
            yield path, node["ci"]
        for k, v in node.items():
            yield from _intervals(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _intervals(v, f"{path}[{i}]")


def test_no_printed_interval_has_zero_width_on_a_handful_of_one_sided_votes(project, capsys) -> None:
    import json as _json

    from preceptor.cli import main

    j = Judged(project)
    for i in range(4):
        pair, outs = j.pair(j.prompt(), _texts(i))
        for judge in ("ann", "bob"):
            j.vote(pair, outs, "ft", judge=judge)
        j.vote(pair, outs, "ft", kind="llm", judge="gpt")
        j.vote(pair, outs, "ft", kind="metric", judge="rougeL")
    assert main(["--project", str(project.root), "stats", "--min-n", "1", "--json"]) == 0
    res = _json.loads(capsys.readouterr().out)
    found = list(_intervals(res))
    assert found  # win rates, leagues, agreement...
    for path, (lo, hi) in found:
        assert hi > lo, f"{path} has a zero-width interval [{lo}, {hi}]"


def test_style_control_removes_a_pure_length_preference(project) -> None:
    """A judge that picks the longer answer 4 times in 5, with each system longer half the time:
    the plain league is even, the length coefficient is large and positive, and the
    length-controlled win rate stays near 50 % with an interval that covers it."""
    j = Judged(project)
    for i in range(40):
        long_ft = i % 2 == 0
        texts = {"base": "short" if long_ft else "a much longer answer " * 5,
                 "ft": "a much longer answer " * 5 if long_ft else "short"}
        pair, outs = j.pair(j.prompt(), texts)
        longer = "ft" if long_ft else "base"
        shorter = "base" if long_ft else "ft"
        j.vote(pair, outs, shorter if i % 10 in (0, 5) else longer)
    res = compute(project, StatsOptions(**FAST))
    sc = res["style_controlled"]["expert"]
    assert sc["length_coefficient"]["ci"][0] > 0.5
    [lc] = sc["lc_win_rates"]
    lo, hi = lc["lc_win_rate_1"]["ci"]
    assert lo < 0.5 < hi and hi > lo
    assert abs(lc["lc_win_rate_1"]["value"] - 0.5) < 0.05
