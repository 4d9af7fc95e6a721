import os

import pytest
import torch

# Two CI cores: keep torch from oversubscribing them when DataLoader workers run too.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


