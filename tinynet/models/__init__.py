"""AlexNet in three forms: the two-tower paper net, the one-device grouped net, a small net;
and the two PyTorch listings users learned from (torchvision's and d2l's), with their names;
registry.py: the one list of them by name that every tool reads."""
from .alexnet import (INITS, AlexNet2012, alexnet, alexnet2012, alexnet_small, init_values, init_weights, merge_towers,
                      split_towers)
from .seeds import SEED_INITS, alexnet_d2l, alexnet_torchvision, init_seed_weights
from . import registry  # noqa: E402  (after the builders it lists)

__all__ = ["INITS", "SEED_INITS", "AlexNet2012", "alexnet", "alexnet2012", "alexnet_d2l", "alexnet_small",
           "alexnet_torchvision", "init_seed_weights", "init_values", "init_weights", "merge_towers", "registry",
           "split_towers"]
