"""The seeds' own file formats, as they come (data written for these tests).

* seed 000: ``prompt,response_teacher,response_student`` (Thai or English) -> ``train sft``
  trains the hf student on ``response_teacher``; the student answers are an imported system
  that never becomes the trainable base.
* seed 002: ``dur_type,description,label`` (Korean) -> ``import-pairs`` detects the columns
  without flags and a curriculum stage trains.
"""

from __future__ import annotations

import csv
from pathlib import Path

from preceptor.cli import main
from preceptor.db import embed as q_embed
from preceptor.engine.events import Done

KOREAN_DUR = [
    ("임부금기", "임산부에게 투여하면 태아에게 해로운 영향을 줄 수 있어 사용을 금지한 약물입니다."),
    ("임부금기", "임신 중에는 기형 유발 위험 때문에 복용하면 안 되는 약입니다."),
    ("병용금기", "두 가지 이상의 약을 함께 복용하면 심각한 부작용이 생길 수 있어 같이 쓰지 않는 약물입니다."),
    ("병용금기", "다른 특정 약과 동시에 먹으면 위험한 상호작용이 나타나는 약입니다."),
    ("노인주의", "노인은 대사 기능이 떨어져 부작용이 늘 수 있으므로 투여할 때 주의가 필요한 약물입니다."),
    ("노인주의", "고령 환자에게 쓸 때 낙상이나 혼동을 일으킬 수 있어 조심해야 하는 약입니다."),
    ("연령금기", "일정한 나이보다 어린 소아에게는 안전성이 확립되지 않아 사용하지 않는 약물입니다."),
    ("연령금기", "어린이에게 투여하면 성장에 문제를 일으킬 수 있어 금지된 약입니다."),
    ("용량주의", "하루 최대 투여량을 넘기면 독성이 나타날 수 있어 용량을 지켜야 하는 약물입니다."),
    ("용량주의", "정해진 양보다 많이 먹으면 간 손상이 생길 수 있는 약입니다."),
    ("투여기간주의", "오랜 기간 계속 쓰면 부작용 위험이 커져 복용 기간을 제한하는 약물입니다."),
    ("투여기간주의", "장기간 복용하면 내성이나 의존성이 생길 수 있어 기간을 지켜야 하는 약입니다."),
]


def _write_csv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_seed_002_korean_pairs_import_without_flags_and_train_a_stage(tmp_path, capsys, tiny_encoder):
    from preceptor.engine.train import curriculum
    from preceptor.engine.train.plan import plan, start
    from preceptor.project import Project

    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    f = _write_csv(tmp_path / "drug_dur_type_similarity_train.csv", ["dur_type", "description", "label"],
                   [(t, d, "1.0") for t, d in KOREAN_DUR])
    capsys.readouterr()
    assert main(["import-pairs", str(f), "--stage", "dur", "--val-ratio", "0.3", "--project", str(proj)]) == 0
    out = capsys.readouterr().out
    assert "Columns: anchor=dur_type positive=description negative=None score=label group=None; split groups: none found" in out
    project = Project.open(proj)
    pairs = q_embed.pairs(project.store, "dur")
    assert len(pairs) == len(KOREAN_DUR) and {p.score for p in pairs} == {1.0}
    assert {p.anchor for p in pairs} == {t for t, _ in KOREAN_DUR}
    # a Korean curriculum starts from the multilingual encoder unless a base is named
    settings, stages, _ = curriculum.plan_stages(project, {})
    assert settings.base == "multilingual-e5-small" and stages == ["dur"]
    # and the stage trains (on the tiny local encoder, for speed)
    project.update_settings({"embed": {"base": str(tiny_encoder), "batch_size": 4, "learning_rate": 1e-3,
                                       "save_steps": 1000, "mine_negatives": False}})
    run = start(project, plan(project, "embed", {"max_steps": 4}, launch={"launcher": "inline"}))
    done = list(curriculum.follow(project, run.id))[-1]
    assert isinstance(done, Done)
    (stage,) = done.summary["stages"]
    assert stage["stage"] == "dur" and stage["status"] == "succeeded"
    assert Path(stage["model_path"]).is_dir()
