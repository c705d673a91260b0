"""``pairs make``: idempotent, canonical order, no identical texts, the prompt's split."""

from __future__ import annotations

import json

import pytest

from preceptor.cli import main
from preceptor.db import judging as q
from preceptor.errors import PreceptorError
from tests.test_judge_support import make_all_pairs, seed_outputs


def test_pairs_are_canonical_idempotent_and_skip_identical_answers(project):
    seed_outputs(project, 60, identical_every=7)
    s = make_all_pairs(project, systems=("beta", "alpha"))
    identical = len([k for k in range(60) if k % 7 == 0])
    assert (s["created"], s["identical"], s["existing"]) == (60 - identical, identical, 0)
    rows = project.store.all("""SELECT p.*, pr.split AS prompt_split, a.text AS ta, b.text AS tb, a.system_id AS sa_out
                                FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
                                JOIN outputs a ON a.id = p.output_a JOIN outputs b ON b.id = p.output_b""")
    assert len(rows) == 60 - identical
    for r in rows:
        assert r["output_a"] < r["output_b"]
        assert r["split"] == r["prompt_split"]
        assert r["ta"] != r["tb"]
        assert r["system_a"] == r["sa_out"]
    assert s["by_split"] == {sp: sum(1 for r in rows if r["split"] == sp) for sp in ("train", "val", "test")}
    again = make_all_pairs(project)
    assert (again["created"], again["existing"]) == (0, 60 - identical)
    assert project.store.scalar("SELECT COUNT(*) FROM pairs") == 60 - identical


def test_split_limit_and_missing_outputs(project):
    from preceptor.db import outputs as q_outputs

    info = seed_outputs(project, 30)
    sx, sy = info["systems"]
    q_outputs.record(project.store, info["prompt_ids"][3], sy.id, error="timeout")  # a failed output: not paired
    s = make_all_pairs(project, split="train", limit=5, seed=3)
    assert s["created"] == 5 and s["by_split"] == {"train": 5}
    first = {r[0] for r in project.store.all("SELECT prompt_id FROM pairs")}
    s2 = make_all_pairs(project, split="train")
    assert s2["missing_output"] == 1 and s2["created"] == 10 - 1 - 5
    # the same seed and limit choose the same prompts
    project.store.execute("DELETE FROM pairs")
    make_all_pairs(project, split="train", limit=5, seed=3)
    assert {r[0] for r in project.store.all("SELECT prompt_id FROM pairs")} == first


def test_unknown_system_and_bad_options(project):
    seed_outputs(project, 3)
    with pytest.raises(PreceptorError) as err:
        make_all_pairs(project, systems=("alpha", "gamma"))
    assert err.value.message == "no system named or with role 'gamma'"
    assert "alpha, beta" in err.value.hint
    with pytest.raises(PreceptorError) as err:
        make_all_pairs(project, systems=("alpha", "alpha"))
    assert err.value.message == "--systems alpha,alpha: give two different systems"
    with pytest.raises(PreceptorError) as err:
        make_all_pairs(project, split="validation")
    assert err.value.message == "--split 'validation': 'validation' is not train, val or test"


def test_cli_pairs_make_list_and_experts(project, capsys):
    seed_outputs(project, 12)
    root = str(project.root)
    assert main(["--project", root, "pairs", "make", "--systems", "alpha,beta", "--split", "val,test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["created"] == 8 and out["by_split"] == {"val": 4, "test": 4}
    assert main(["--project", root, "pairs", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted((r["split"], r["pairs"]) for r in rows) == [("test", 4), ("val", 4)]
    assert main(["--project", root, "experts", "add", "Dr Ada"]) == 0
    assert main(["--project", root, "experts", "add", "dr ada"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Added expert 'Dr Ada'.", "Expert 'Dr Ada' already exists (names are case-insensitive)."]
    assert main(["--project", root, "pairs", "make", "--systems", "alpha"]) == 2
    assert "give two different systems" in capsys.readouterr().err


def test_cli_scripted_expert_round_trip(project, capsys):
    seed_outputs(project, 4, splits=("val",))
    make_all_pairs(project)
    root = str(project.root)
    main(["--project", root, "experts", "add", "Ada"])
    capsys.readouterr()
    assert main(["--project", root, "judge", "next", "--as", "ada", "--json"]) == 0
    served = json.loads(capsys.readouterr().out)
    assert set(served) == {"pair_id", "prompt_id", "prompt", "reference", "A", "B", "repeat", "done", "total"}
    assert "alpha" not in json.dumps(served) and "beta" not in json.dumps(served)  # blind: no system names
    assert main(["--project", root, "judge", "record", "--as", "Ada", "--pair", str(served["pair_id"]),
                 "--verdict", "B", "--unsafe", "A", "--note", "A misses CYP3A", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    j = q.get_judgment(project.store, rec["judgment_id"])
    assert j["latency_ms"] is not None and j["latency_ms"] >= 0  # time from `judge next` to `judge record`
    winner_text = project.store.scalar("SELECT text FROM outputs WHERE id = ?", (j["winner_output_id"],))
    loser = project.store.one("SELECT id, text FROM outputs WHERE id IN (?, ?) AND id != ?",
                              (*(lambda r: (r["output_a"], r["output_b"]))(q.get_pair(project.store, served["pair_id"])),
                               j["winner_output_id"]))
    assert winner_text == served["B"] and loser["text"] == served["A"]
    pair = q.get_pair(project.store, served["pair_id"])
    assert bool(j["unsafe_a"]) == (loser["id"] == pair["output_a"]) and bool(j["unsafe_b"]) == (loser["id"] == pair["output_b"])
    assert main(["--project", root, "judge", "history", "--as", "Ada", "--json"]) == 0
    hist = json.loads(capsys.readouterr().out)
    assert [(h["pair_id"], h["verdict"], h["unsafe"], h["note"]) for h in hist] == [(served["pair_id"], "B", ["A"], "A misses CYP3A")]
    assert main(["--project", root, "judge", "record", "--as", "Zed", "--pair", "1", "--verdict", "A"]) == 2
    assert "no expert named 'Zed'" in capsys.readouterr().err


def test_cli_reservations_outlive_the_judge_next_process(project, capsys):
    seed_outputs(project, 5, splits=("val",))
    make_all_pairs(project)
    root = str(project.root)
    for name in ("Ada", "Bo"):
        main(["--project", root, "experts", "add", name])
    capsys.readouterr()

    def serve(name):
        assert main(["--project", root, "judge", "next", "--as", name, "--json"]) == 0
        return json.loads(capsys.readouterr().out)["pair_id"]

    first = serve("Ada")
    second = serve("Ada")  # another process of hers: never the pair already out with the first one (issue 17)
    assert second != first
    assert serve("Bo") not in (first, second)  # the reservations hold although the serving processes have ended
    assert main(["--project", root, "judge", "record", "--as", "Ada", "--pair", str(first), "--verdict", "tie"]) == 0
    capsys.readouterr()
    assert serve("Ada") not in (first,)
