"""`preceptor demo`: the whole loop offline on the shipped demo data."""

from __future__ import annotations

from pathlib import Path

import click

from preceptor.cli.common import cancel_on_sigint, drive, echo_json


@click.command("demo")
@click.option("--fast", is_flag=True, help="A fixed subset (10 train + 6 val items), a few steps, short answers: under 4 minutes.")
@click.option("--prepare", is_flag=True, help="Only prepare the small demo project the app opens on (what `make run` does).")
@click.option("--dir", "root", type=click.Path(file_okay=False), default=None,
              help="Where the demo project lives (default: $PRECEPTOR_HOME/demo, or demo-fast with --fast).")
@click.option("--sft-steps", type=int, default=None, help="SFT optimizer steps (default 4 with --fast, else 30).")
@click.option("--dpo-steps", type=int, default=None, help="DPO optimizer steps (default 3 with --fast, else 20).")
@click.option("--loop", "loop", is_flag=True, hidden=True, help="The measured loop (the default without --fast; kept for scripts).")
@click.option("--tour", is_flag=True,
              help="Every stage on the small subset instead (LLM judge, stats, two rounds of pairs) rather than the measured loop.")
@click.option("--student", default=None, metavar="MODEL",
              help="A larger student for the measured loop (a hub id such as Qwen/Qwen3-1.7B, or a local folder): "
                   "base and grounded teacher use it; it downloads only because you named it. Meant for a GPU.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
def demo_cmd(fast: bool, prepare: bool, root: str | None, sft_steps: int | None, dpo_steps: int | None, loop: bool,
             tour: bool, student: str | None, as_json: bool) -> None:
    """Run the whole loop headless on a demo project and print what happened."""
    from preceptor.engine import demo

    cancel = cancel_on_sigint()
    if student and (fast or prepare or tour):
        from preceptor.errors import PreceptorError

        raise PreceptorError("--student is for the measured loop", "--student cannot be combined with --fast, --prepare or --tour",
                             "Run `preceptor demo --student MODEL` (the full loop).")
    if loop or not (fast or prepare or tour):  # the default: the measured loop on held-out drugs, then its gains
        from preceptor import paths

        preset = demo.LoopPreset(student=student) if student else demo.LoopPreset()
        summary = drive(demo.run_loop_with_gains(Path(root) if root else paths.home() / "demo-loop", preset, cancel=cancel), "demo")
    elif prepare:
        summary = drive(demo.prepare(Path(root) if root else None, cancel), "demo")
        click.echo(f"Demo project ready: {summary['project']} ({summary['seconds']:.0f}s)")
    else:
        opts = demo.DemoOptions(fast=fast, project=Path(root) if root else None, sft_steps=sft_steps, dpo_steps=dpo_steps)
        summary = drive(demo.run_demo(opts, cancel), "demo")
    if as_json:
        echo_json(summary)
