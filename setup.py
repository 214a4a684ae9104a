"""Builds the native MLP kernels (src/digitlab/training/_native.c); everything else is in pyproject.toml.

The library is optional: where it cannot be compiled, digitlab installs without it and trains every
model with torch.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "digitlab.training._native",
            sources=["src/digitlab/training/_native.c"],
            extra_compile_args=["-O3", "-pthread", "-std=c11"],
            extra_link_args=["-pthread"],
            libraries=["m"],
            optional=True,
        )
    ]
)
