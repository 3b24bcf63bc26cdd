"""A complete Harambee participant in PyTorch: the simulator's MNIST CNN, trained with your
own loop.

The network is McMahan et al.'s CNN, Harambee's `cnn` (`harambee init --model cnn`), with the
same tensor names and shapes, so PyTorch and Rust participants train one model together. It
also runs a custom federation started from its own initial weights (`--write-initial FILE`,
then `harambee init --model safetensors:FILE`).

    python examples/python/pytorch_mnist.py --invite invite.toml --key member.key \\
        --data data/mnist --shard 0/2

Needs PyTorch and NumPy. The data folder holds MNIST's IDX files, as `data/mnist` does.
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_logreg import load, run  # noqa: E402  (the same IDX reader and command line)


class Cnn(nn.Module):
    """5x5 conv 32, 2x2 max-pool, 5x5 conv 64, 2x2 max-pool, fc 512, fc 10, ReLU."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(7 * 7 * 64, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


MODEL = Cnn()


def load_global(parameters):
    """The round's global model into MODEL (load_state_dict copies it into its tensors)."""
    MODEL.load_state_dict({k: torch.from_numpy(v) for k, v in parameters.items()})


def state_dict_arrays():
    """MODEL's tensors as the NumPy arrays Harambee takes (views, no copy)."""
    return {k: v.detach().cpu().numpy() for k, v in MODEL.state_dict().items()}


def fit(parameters, config):
    """Local SGD from the global model, as the round's config says."""
    x, y = config["data"]["train"]
    load_global(parameters)
    anchor = [p.detach().clone() for p in MODEL.parameters()] if config["proximal_mu"] else None
    optimiser = torch.optim.SGD(MODEL.parameters(), lr=config["learning_rate"])
    generator = torch.Generator().manual_seed(config["seed"])
    batch = config["batch_size"] or len(x)
    steps = config["local_steps"] or config["epochs"] * -(-len(x) // batch)
    images = torch.from_numpy(x).view(-1, 1, 28, 28)
    labels = torch.from_numpy(y)
    MODEL.train()
    order, position, losses = torch.randperm(len(x), generator=generator), 0, []
    for _ in range(steps):
        if position >= len(x):
            order, position = torch.randperm(len(x), generator=generator), 0
        idx = order[position : position + batch]
        position += batch
        optimiser.zero_grad()
        loss = F.cross_entropy(MODEL(images[idx]), labels[idx])
        if anchor is not None:  # FedProx: pull towards the global model
            loss = loss + config["proximal_mu"] / 2 * sum(
                ((p - a) ** 2).sum() for p, a in zip(MODEL.parameters(), anchor)
            )
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return state_dict_arrays(), len(x), {"loss": float(np.mean(losses[-max(1, len(losses) // 4) :]))}


@torch.no_grad()
def evaluate(parameters, config):
    """Loss and accuracy of the global model on this member's held-out data."""
    x, y = config["data"]["test"]
    load_global(parameters)
    MODEL.eval()
    logits = MODEL(torch.from_numpy(x).view(-1, 1, 28, 28))
    labels = torch.from_numpy(y)
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    print(f"round {config['round']}: the global model scores {accuracy:.3f} here", flush=True)
    return loss, len(x), {"accuracy": accuracy}


def write_initial(path, seed=0):
    """PyTorch's own initialisation, as a custom federation's initial weights."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    save_file(Cnn().state_dict(), path)


if __name__ == "__main__":
    run(fit, evaluate, write_initial, "pytorch participant", __doc__.splitlines()[0])
