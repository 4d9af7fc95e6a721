"""Where people train: frameworks and tools SmartLoader plugs into.

Each module imports its framework only when it is itself imported, so ``import smartloader``
never needs them:

- :mod:`smartloader.integrations.lightning` — PyTorch Lightning (``smartloader[lightning]``)
- :mod:`smartloader.integrations.hf` — the Hugging Face ``Trainer`` (``smartloader[hf]``)
- :mod:`smartloader.integrations.accelerate` — Hugging Face accelerate (``smartloader[hf]``)
- :mod:`smartloader.integrations.logging` — TensorBoard, W&B/MLflow-style dict loggers and
  progress bars
- :mod:`smartloader.integrations.compile` — ``torch.compile``: planned shapes, pre-warm and
  recompile counts
"""
