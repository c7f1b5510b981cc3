"""Kernel sources of tinynet: cpu/ holds Numba kernels, cuda/ CUDA C sources for CuPy.

Installed, this folder becomes the package `tinynet.kernels`; in a checkout,
tinynet/_kernels.py maps it to that name, so backends always `import tinynet.kernels.cpu.X`.
"""
