"""The smallest complete use of smartloader: a plain PyTorch loop, one added line.

Hardware: any CPU. Runtime: ~30 s on 2 cores. Trains a small CNN on smartloader's built-in
synthetic gratings for 600 steps and prints the last step's stats and the test accuracy.

    python examples/plain_loop.py
"""
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import smartloader
from smartloader.tools.datasets import synthetic_images
from smartloader.tools.demo import SmallCNN, evaluate

train_x, train_y, test_x, test_y = synthetic_images(n_train=4000, n_test=1000)
train_set = TensorDataset(train_x, train_y)
# An order that is a function of (seed, epoch) makes the run exactly resumable.
sampler = DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=0)
loader = DataLoader(train_set, batch_size=64, sampler=sampler)

torch.manual_seed(0)
model = SmallCNN(in_channels=1, classes=10)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
steps = 600

loader = smartloader.wrap(loader, model, total_steps=steps, score_resolution=16)  # <- the line

step = 0
for epoch in range(1000):
    loader.set_epoch(epoch)
    for images, labels in loader:
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step == steps:
            break
    if step == steps:
        break

print(loader.stats)
print(f"test accuracy after {steps} steps: {100 * evaluate(model, test_x, test_y):.2f}%")
