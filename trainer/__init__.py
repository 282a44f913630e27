"""The trainer: pure PyTorch, importing nothing from `spaces` or `search`.

`spec` describes a trial in plain values; `train` is the one training loop (a fused group of
trials, `train(spec)` the group of one); `group` says which trials may share a fused network;
`models` builds the network, `techniques` the switchable techniques, `data` the data sets and
on-device batches; `budget`, `measure`, `schedule`, `checkpoint` and `atomic` fit the budget,
measure, schedule, save state and write files whole.
"""
