"""A user's own training function, as the custom kind's contract has it (README): what
tests/cluster/test_train_custom.py names as ``custom_training:train_small_net``."""

from __future__ import annotations

import torch


def train_small_net(ctx) -> torch.nn.Module:
    """A two-layer network trained full-batch for ``params["epochs"]`` epochs (default 60),
    reporting and checkpointing its state every ``params["report_every"]`` epochs (default
    20; 1 in a sweep, which counts reports as epochs) and resuming from the last one after a
    restart."""
    torch.manual_seed(ctx.seed)
    net = torch.nn.Sequential(torch.nn.Linear(ctx.width, 16), torch.nn.ReLU(),
                              torch.nn.Linear(16, ctx.outputs))
    model = ctx.prepare_model(net)
    opt = torch.optim.Adam(model.parameters(), lr=float(ctx.params.get("lr", 0.05)))
    start = 0
    state = ctx.restore()
    if state is not None:
        net.load_state_dict(state["model"])
        start = state["epoch"] + 1
    epochs = int(ctx.params.get("epochs", 60))
    every = int(ctx.params.get("report_every", 20))
    for epoch in range(start, epochs):
        opt.zero_grad()
        loss = ctx.loss(model(ctx.x), ctx.y)
        loss.backward()
        opt.step()
        if (epoch + 1) % every == 0 or epoch + 1 == epochs:
            ctx.report({"epoch": epoch, "loss": float(loss)},
                       state={"model": net.state_dict(), "epoch": epoch})
    return model
