"""The speed benchmark (``python -m experiments.bench``) and its pieces, beside its reports.

``suite`` is the benchmark itself (settings, cases, the run, the command line). ``timing``
holds the one timing helper (:func:`measure`) and the result types; each other module builds
the callables it times: ``train_speed`` (catdiff's training step), ``sampling`` (catdiff's
samplers), ``peer`` (the same work in diffusers), ``data_pipeline`` (decode and batch
drawing), ``flops`` (model FLOPs and the machine's peak rates), ``own_process`` and
``workloads`` (a tool timed in a spawned process of its own), ``report`` (JSON and markdown).
``data`` is a separate command (``python -m experiments.bench.data``): data setup and
batches/s with the real ``CatDataModule``. No Hydra: everything is built from plain keyword
arguments.
"""
