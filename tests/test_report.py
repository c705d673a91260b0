"""`preceptor report`: md / html / csv from stored values, the section registry, never overwriting."""

from __future__ import annotations

import csv
import math
import re

import pytest

from preceptor.db import metrics as q
from preceptor.db import runs as q_runs
from preceptor.engine.evaluation.evaluate import system_table
from preceptor.engine.results import report as R
from preceptor.errors import PreceptorError
from tests.test_eval import FAST, populate, run_eval


@pytest.fixture
def evaluated(project):
    populate(project)
    run_eval(project)
    return project


def _stored(project, system: str, metric: str) -> list[float]:
    rows = project.store.all(
        "SELECT m.value FROM metrics m JOIN outputs o ON o.id = m.output_id JOIN systems s ON s.id = o.system_id "
        "WHERE s.name = ? AND m.name = ? AND m.reference = 'gold' AND m.value IS NOT NULL", (system, metric))
    return [r[0] for r in rows]


def test_markdown_report_numbers_equal_the_stored_metrics(evaluated) -> None:
    path = R.build_report(evaluated, "md", opts=R.ReportOptions(split="all"))
    text = path.read_text()
    assert path.parent == evaluated.reports_dir() and re.fullmatch(r"report-\d{8}T\d{6}Z(-\d+)?\.md", path.name)
    table = [ln for ln in text.splitlines() if ln.startswith("| ROUGE-L |")][0]
    cells = [c.strip() for c in table.strip("|").split("|")]
    for system, cell in zip(["imported-base", "imported-teacher"], cells[1:], strict=False):
        vals = _stored(evaluated, system, "rougeL")
        assert cell.startswith(f"{sum(vals) / len(vals):.3f} [") and cell.endswith(f"n={len(vals)}")
    assert "## Win rates by metric" in text and "imported-base vs imported-teacher" in text
    assert "## Best and worst examples" in text
    svg = re.search(r"!\[Metrics per system\]\(([^)]+)\)", text).group(1)
    assert (path.parent / svg).read_text().startswith("<svg")
    rows_csv = re.search(r"`(report-[^`]+-rows\.csv)`", text).group(1)
    assert (path.parent / rows_csv).is_file()


def test_csv_report_is_the_per_row_table_with_every_metric(evaluated) -> None:
    path = R.build_report(evaluated, "csv", opts=R.ReportOptions(split="all"))
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10
    assert {"prompt", "reference", "prediction", "system", *FAST} <= set(rows[0])
    for r in rows:
        stored = q.all_values(evaluated.store, [int(r["output_id"])], "gold")[int(r["output_id"])]
        for m in FAST:
            if stored[m] is None:
                assert r[m] == ""
            else:
                assert float(r[m]) == stored[m]
    metrics_csv = path.with_name(path.stem + "-metrics.csv")
    with metrics_csv.open() as fh:
        summary = {(r["system"], r["metric"]): r for r in csv.DictReader(fh)}
    t = {x["system"]: x for x in system_table(evaluated, reference="gold", split="all")}
    assert float(summary[("imported-teacher", "facet_f1")]["mean"]) == t["imported-teacher"]["metrics"]["facet_f1"]["mean"]


def test_html_report_embeds_charts_and_says_what_is_rescaled(evaluated) -> None:
    ids = [r[0] for r in evaluated.store.all("SELECT id FROM outputs ORDER BY id LIMIT 2")]
    q.upsert_many(evaluated.store, [(ids[0], "bertscore_f1", "gold", 0.9, {"lang": "en", "rescaled": False}),
                                    (ids[1], "bertscore_f1", "gold", 0.4, {"lang": "th", "rescaled": True})])
    path = R.build_report(evaluated, "html", opts=R.ReportOptions(split="all"))
    html = path.read_text()
    assert html.startswith("<!doctype html>")
    assert re.search(r'<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+" alt="Metrics per system"', html)
    assert "<table>" in html and "<th>metric</th>" in html
    assert "en: 1 items, NOT rescaled (no baseline for the encoder); th: 1 items, rescaled with a baseline" in html


def test_markdown_to_html_escapes() -> None:
    assert R.markdown_to_html("a <b> & **x** `y`") == "<p>a &lt;b&gt; &amp; <strong>x</strong> <code>y</code></p>"
    assert R.markdown_to_html("| a | b\\|c |\n|---|---|\n| 1 | 2 |").replace("\n", "") == (
        "<table><thead><tr><th>a</th><th>b|c</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody></table>")


def test_reports_never_overwrite(evaluated) -> None:
    paths = {R.build_report(evaluated, "md", opts=R.ReportOptions(split="all")) for _ in range(3)}
    assert len(paths) == 3 and all(p.exists() for p in paths)


def test_registered_sections_render_in_every_format(evaluated, monkeypatch) -> None:
    monkeypatch.setattr(R, "_REGISTRY", dict(R._REGISTRY))

    def judges(project, opts):
        return R.Section("judges", "Judge statistics", "Kappa **0.61** (n=40)\n\n| judge | n |\n|---|---|\n| expert | 40 |",
                         csv_rows=[{"judge": "expert", "n": 40}])

    R.register_section("judges", 50, judges)
    R.register_section("empty", 60, lambda project, opts: None)
    assert [k for k, _ in R.registered()].index("judges") > [k for k, _ in R.registered()].index("examples")
    md = R.build_report(evaluated, "md", opts=R.ReportOptions(split="all"))
    assert "## Judge statistics\n\nKappa **0.61** (n=40)" in md.read_text() and "empty" not in md.read_text().lower().split("## ")[-1][:10]
    html = R.build_report(evaluated, "html", opts=R.ReportOptions(split="all")).read_text()
    assert "<p>Kappa <strong>0.61</strong> (n=40)</p>" in html and "<td>expert</td>" in html
    out = R.build_report(evaluated, "csv", opts=R.ReportOptions(split="all"))
    with out.with_name(out.stem + "-judges.csv").open() as fh:
        assert list(csv.DictReader(fh)) == [{"judge": "expert", "n": "40"}]


def test_training_section_curves_and_eval_perplexity(evaluated) -> None:
    run = q_runs.create(evaluated.store, "sft", {"lr": 1e-4})
    q_runs.add_metrics(evaluated.store, run.id, [(1, "loss", 2.0), (2, "loss", 1.5), (2, "eval_loss", math.log(5.0))])
    sec = R.core.training_section(evaluated, R.ReportOptions())
    assert sec is not None and "| 1 | sft | queued | 1.500 | 1.609 | 5.000 |" in sec.markdown
    assert "train_loss.svg" in sec.images and "<polyline" in sec.images["train_loss.svg"]


def test_report_without_values_says_to_run_eval(project) -> None:
    path = R.build_report(project, "md")
    assert "Run `preceptor eval` first." in path.read_text()
    with pytest.raises(PreceptorError) as e:
        R.build_report(project, "csv")
    assert e.value.message == "no stored metric values for the selected outputs"
    assert list(project.reports_dir().glob("*.csv")) == []
    with pytest.raises(PreceptorError) as e:
        R.build_report(project, "pdf")
    assert e.value.message == "--format 'pdf'"


def test_text_chart_and_terminal_summary(evaluated) -> None:
    bars = R.text_bars([("base", 0.25, 0.1, 0.4), ("teacher", 0.5, None, None), ("none", None, None, None)], width=8, vmax=1.0)
    lines = bars.splitlines()
    assert lines[0] == "base     ██        0.250 [0.100, 0.400]"
    assert lines[1] == "teacher  ████      0.500"
    assert lines[2].endswith("–")
    summary = R.terminal_summary(evaluated, R.ReportOptions(split="all"))
    assert "ROUGE-L by system:" in summary and "imported-teacher" in summary


def test_cli_report(evaluated, capsys) -> None:
    from preceptor.cli import main

    code = main(["report", "--project", str(evaluated.root), "--format", "html", "--split", "all"])
    out = capsys.readouterr().out
    assert code == 0 and "Report written:" in out
    written = out.strip().splitlines()[-1].split("Report written: ")[1]
    assert written.endswith(".html")
