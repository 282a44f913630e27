"""Orchestration: the `search` command and everything it runs.

`cli` parses and dispatches; `session` runs a study (with `runner`, the only Ray import, and
`worker` on Ray's side); `study`, `storage` and `ledger` hold the Optuna study, where it lives
and its trial bookkeeping; `export`, `report`, `status` and `display` show what it holds.
"""
