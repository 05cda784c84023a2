"""A helper shared by the tests that train: one optimisation step.  (Not a test module.)"""
from tinybptt import nn


def train_step(loss, opt, params, clip=1.0):
    """Backward, clip the gradient norm to ``clip``, step ``opt``; returns the loss as a float."""
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return loss.item()
