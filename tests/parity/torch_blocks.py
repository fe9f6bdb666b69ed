"""The book's StandardBlock in PyTorch, shared by the parity scripts."""
import torch.nn as nn


class StandardBlock(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Dropout(p)."""

    def __init__(self, i, o, p=0.5, bias=True):
        super().__init__()
        self.linear = nn.Linear(i, o, bias=bias)
        self.bn = nn.BatchNorm1d(o)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(p)

    def forward(self, x):
        return self.dropout(self.relu(self.bn(self.linear(x))))
