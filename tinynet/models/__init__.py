"""AlexNet in three forms: the two-tower paper net, the one-device grouped net, a small net."""
from .alexnet import (AlexNet2012, alexnet, alexnet2012, alexnet_small, init_values, init_weights, merge_towers,
                      split_towers)

__all__ = ["AlexNet2012", "alexnet", "alexnet2012", "alexnet_small", "init_values", "init_weights",
           "merge_towers", "split_towers"]
