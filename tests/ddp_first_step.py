"""Helper of test_training: the first training step's gradients, on 1 process or under torchrun.

Usage: ``[torchrun --nproc_per_node N] tests/ddp_first_step.py CONFIG.yaml OUT.pt``; rank 0
writes the gradients of every parameter after ``training.train.train_step`` on the first batch.
"""
import sys

import numpy as np
import torch
import torch.distributed as dist

from training.config import load_config
from training.train import new_model, prepare, setup_distributed, train_step

config = load_config(sys.argv[1])
distributed, rank, world = setup_distributed()
torch.manual_seed(config["seed"])
data = prepare(config)
dtype = torch.float64
model = new_model(data, dtype)
trained = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
perm = np.random.RandomState(config["seed"]).permutation(len(data["train"]))
batch = [data["train"][i] for i in perm[:config["batch_size"]]]
train_step(trained, model, optimizer, batch, rank, world, data["elements"], dtype, config)
if rank == 0:
    torch.save({name: p.grad.clone() for name, p in model.named_parameters()}, sys.argv[2])
if distributed:
    dist.destroy_process_group()
