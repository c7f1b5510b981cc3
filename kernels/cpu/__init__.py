"""Numba kernels for the CPU backend (tinynet/backends/numba_cpu.py), one file per op family."""
