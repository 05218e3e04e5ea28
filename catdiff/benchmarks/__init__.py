"""The pieces of ``python -m catdiff.bench``: timing, workloads, and the report.

``timing`` holds the one timing helper (:func:`measure`) and the result types; each other
module builds the callables it times: ``train_speed`` (catdiff's training step), ``sampling``
(catdiff's samplers), ``peer`` (the same work in diffusers), ``data_pipeline`` (decode and
batch drawing), ``flops`` (model FLOPs and the machine's peak rates), ``report`` (JSON and
markdown). No Hydra: everything is built from plain keyword arguments.
"""
