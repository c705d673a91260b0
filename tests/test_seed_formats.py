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

import pytest

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


THAI_DDI = [  # (drug, prompt, teacher answer, student answer)
    ("คลาริโทรมัยซิน", "อธิบายปฏิกิริยาระหว่างคลาริโทรมัยซินกับมิดาโซแลม",
     "คลาริโทรมัยซินยับยั้ง CYP3A4 ทำให้ระดับมิดาโซแลมในเลือดสูงขึ้น", "คลาริโทรมัยซินเป็นยาปฏิชีวนะ"),
    ("คลาริโทรมัยซิน", "คลาริโทรมัยซินออกฤทธิ์อย่างไร",
     "คลาริโทรมัยซินจับกับไรโบโซม 50S ของแบคทีเรียและยับยั้งการสร้างโปรตีน", "ไม่ทราบ"),
    ("วาร์ฟาริน", "อธิบายกลไกของวาร์ฟาริน",
     "วาร์ฟารินยับยั้งเอนไซม์ VKORC1 ลดการสร้างปัจจัยการแข็งตัวของเลือด", "วาร์ฟารินทำให้เลือดใส"),
    ("วาร์ฟาริน", "วาร์ฟารินกับแอสไพรินใช้ร่วมกันได้หรือไม่",
     "การใช้ร่วมกันเพิ่มความเสี่ยงเลือดออก ควรหลีกเลี่ยงหรือเฝ้าระวังใกล้ชิด", "ได้"),
    ("ริแฟมพิซิน", "ริแฟมพิซินมีผลต่อยาอื่นอย่างไร",
     "ริแฟมพิซินเหนี่ยวนำ CYP3A4 ทำให้ระดับยาหลายชนิดในเลือดลดลง", "ริแฟมพิซินรักษาวัณโรค"),
    ("ริแฟมพิซิน", "อธิบายปฏิกิริยาระหว่างริแฟมพิซินกับมิดาโซแลม",
     "ริแฟมพิซินเร่งการเปลี่ยนแปลงมิดาโซแลม ทำให้ฤทธิ์ของมิดาโซแลมลดลงมาก", "ไม่มีปฏิกิริยา"),
    ("เมทฟอร์มิน", "เมทฟอร์มินลดน้ำตาลในเลือดอย่างไร",
     "เมทฟอร์มินลดการสร้างกลูโคสที่ตับและเพิ่มความไวต่ออินซูลิน", "เมทฟอร์มินเป็นยาเบาหวาน"),
    ("เมทฟอร์มิน", "ข้อควรระวังของเมทฟอร์มินคืออะไร",
     "ควรระวังภาวะกรดแลคติกคั่งในผู้ป่วยไตบกพร่อง", "ไม่มี"),
]


def _seed000_project(tmp_path, capsys, student: str | None):
    from preceptor.project import Project

    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    if student:
        Project.open(proj).update_settings({"systems": {"tiny-student": {"role": "base", "backend": "hf", "model": student}}})
    f = _write_csv(tmp_path / "ddi_th.csv", ["prompt", "response_teacher", "response_student", "drug"],
                   [(p, t, s, d) for d, p, t, s in THAI_DDI])
    capsys.readouterr()
    assert main(["import", str(f), "--val-ratio", "0.3", "--project", str(proj)]) == 0
    return Project.open(proj), capsys.readouterr().out


def test_seed_000_thai_csv_trains_sft_straight_after_import(tmp_path, capsys, tiny_lm):
    from preceptor.db import prompts as q_prompts
    from preceptor.db import runs as q_runs
    from preceptor.db import systems as q_systems
    from preceptor.engine.train.plan import plan, start

    project, out = _seed000_project(tmp_path, capsys, str(tiny_lm))
    assert "group=drug; split groups: column 'drug' (detected; pass --group-col to use another)." in out
    assert "Imported outputs: 8 student (imported-base), 8 teacher (imported-teacher)." in out
    # one drug never lands in two splits
    splits: dict[str, set[str]] = {}
    for p in q_prompts.select(project.store, q_prompts.PromptFilter(split="all")):
        splits.setdefault(p.group_key, set()).add(p.split)
    assert len(splits) == 4 and all(len(v) == 1 for v in splits.values())
    imported = q_systems.by_name(project.store, "imported-base")
    assert imported.imported and imported.backend == "imported"
    # nothing registered the configured student first: train sft still finds it, never imported-base
    lp = plan(project, "sft", {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 768, "lora_r": 4,
                               "threads": 1, "device": "cpu"}, launch={"launcher": "inline"})
    assert lp.data["sources"] == {"imported-teacher": lp.data["train"]}  # trained on response_teacher
    run = start(project, lp, wait=True)
    run = q_runs.get(project.store, run.id)
    assert run.status == "succeeded", run.error
    ft = q_systems.get(project.store, run.system_id)
    assert ft.model == str(tiny_lm) and ft.role == "ft"
    assert q_systems.latest_trainable(project.store, "base").name == "tiny-student"


@pytest.mark.slow
def test_seed_000_thai_csv_trains_the_packaged_student(tmp_path, capsys):
    from preceptor.db import runs as q_runs
    from preceptor.db import systems as q_systems
    from preceptor.engine.models import PACKAGED_STUDENT, converted_dir, is_converted
    from preceptor.engine.train.plan import plan, start

    if not is_converted(converted_dir(PACKAGED_STUDENT)):
        pytest.skip("the packaged student is not set up (run `preceptor models setup`)")
    project, _ = _seed000_project(tmp_path, capsys, None)
    lp = plan(project, "sft", {"max_steps": 1, "batch_size": 1, "grad_accum": 1, "max_length": 256, "lora_r": 4,
                               "threads": 1, "device": "cpu", "lora_targets": ["q_proj", "v_proj"]},
              launch={"launcher": "inline"})
    run = q_runs.get(project.store, start(project, lp, wait=True).id)
    assert run.status == "succeeded", run.error
    ft = q_systems.get(project.store, run.system_id)
    assert ft.model == PACKAGED_STUDENT and ft.role == "ft"
    assert q_systems.latest_trainable(project.store, "base").name == "smollm2"
