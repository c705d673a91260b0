"""Training: LoRA SFT, DPO and embedder stages, each a run executed in its own process.

* ``runner``   — start / watch / cancel / resume runs (the API the CLI and TUI use);
* ``worker``   — the process entry point (``python -m preceptor.engine.train.worker``);
* ``registry`` — run kind → job function; ``context`` — what a job sees (``RunContext``);
* ``settings`` — ``[train.sft]`` / ``[train.dpo]`` dataclasses and presets;
* ``sft``, ``dpo`` — the jobs; ``callbacks`` — trainer → run metrics / cancel;
* ``ship``     — ``preceptor models export``: adapter or merged model with a model card.

Nothing heavy is imported here: torch / transformers / peft / trl load only inside jobs.
"""
