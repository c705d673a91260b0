"""The ``preceptor`` command line: thin click commands over the engine.

Commands are registered lazily (module path per name) so ``preceptor --help`` and the TUI
start without importing what other commands need. Add a command by adding one entry to
:data:`COMMANDS`; put its code in its own module under ``preceptor/cli/``.
"""

from __future__ import annotations

import sqlite3
import sys

import click

from preceptor.cli.common import LazySubgroup, say
from preceptor.errors import PreceptorError

COMMANDS: dict[str, str] = {
    "init": "preceptor.cli.core:init_cmd",
    "import": "preceptor.cli.core:import_cmd",
    "status": "preceptor.cli.core:status_cmd",
    "split": "preceptor.cli.core:split_cmd",
    "backup": "preceptor.cli.core:backup_cmd",
    "demo": "preceptor.cli.demo:demo_cmd",
    "train": "preceptor.cli.train:train_group",
    "runs": "preceptor.cli.train:list_cmd",
    "tui": "preceptor.cli.tui:tui_cmd",
    "serve": "preceptor.cli.tui:serve_cmd",
    "models": "preceptor.cli.models:models_group",
    "systems": "preceptor.cli.systems:systems_group",
    "generate": "preceptor.cli.generate:generate_cmd",
    "judge": "preceptor.cli.judge:judge_group",
    "pairs": "preceptor.cli.pairs:pairs_group",
    "experts": "preceptor.cli.experts:experts_group",
    "import-judgments": "preceptor.cli.judge:import_judgments_cmd",
    "eval": "preceptor.cli.eval:eval_cmd",
    "report": "preceptor.cli.eval:report_cmd",
    "stats": "preceptor.cli.stats:stats_cmd",
    "gains": "preceptor.cli.gains:gains_cmd",
    "export": "preceptor.cli.export:export_group",
    "import-pairs": "preceptor.cli.embed:import_pairs_cmd",
    "settings": "preceptor.cli.settings:settings_cmd",
}


@click.group(cls=LazySubgroup, lazy=COMMANDS, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project", "project_dir", type=click.Path(file_okay=False), envvar="PRECEPTOR_PROJECT",
              help="Project folder (default: the current folder, or $PRECEPTOR_PROJECT).")
@click.version_option(package_name="preceptor")
@click.pass_context
def cli(ctx: click.Context, project_dir: str | None) -> None:
    """preceptor: distil a teacher LLM into a small student, with experts in the loop.

    With no command, opens the terminal app on the project.
    """
    ctx.ensure_object(dict)
    ctx.obj["project_dir"] = project_dir
    if ctx.invoked_subcommand is None:
        name = "tui" if "tui" in COMMANDS else "status"
        ctx.invoke(cli.get_command(ctx, name))  # type: ignore[arg-type]


def main_error(exc: PreceptorError) -> int:
    say(f"Error: {exc.title}", "bold red", err=True)
    say(exc.message, err=True)
    if exc.hint:
        say(f"Hint: {exc.hint}", err=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print title, message and hint to stderr and exit 2."""
    try:
        cli.main(args=argv, prog_name="preceptor", standalone_mode=False)
    except PreceptorError as exc:
        return main_error(exc)
    except sqlite3.Error as exc:
        from preceptor.db import user_error

        return main_error(user_error(exc))
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
