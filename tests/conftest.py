import os

import pytest
import torch

# Two CI cores: keep torch from oversubscribing them when DataLoader workers run too.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))



@pytest.fixture(autouse=True, scope="module")
def _collect_after_module():
    """Collect garbage after every test module: a DALI pipeline or an FFCV loader kept alive
    by a reference cycle keeps its native threads (DALI's executor and thread pool, a
    prefetch worker) running, and a later test that forks DataLoader workers would copy a
    process whose other threads may hold locks, which can hang the forked workers."""
    yield
    import gc
    gc.collect()


#: The framework packages the integration tests run against. Without them those tests skip
#: on a developer's machine; in CI (CI=true) a missing one is an error, so none is skipped.
INTEGRATION_PACKAGES = ("lightning", "transformers", "accelerate", "torchdata", "tensorboard",
                        "wandb", "mlflow", "tqdm")


def pytest_configure(config):
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    import importlib.util
    missing = [m for m in INTEGRATION_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        raise pytest.UsageError(
            f"CI runs every integration test, but {missing} are not installed: "
            f"pip install torch==2.13.0 -e \".[dev]\"")
