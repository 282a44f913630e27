"""Orchestration: the `search` command, the Optuna study, the Ray Tune runner, export."""
