"""vljax: JAX-native vision-language pre-training."""
from setuptools import find_packages, setup

MEDIA = ["av>=12", "soundfile>=0.12"]
# NOTE: torch 2.13.0 is the CPU build this project's machines carry on disk; a newer or
# unpinned torch would pull a multi-GB CUDA build.
INTEROP = ["torch==2.13.0", "transformers>=4.45"]
NOTEBOOKS = ["nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6"]

setup(
    name="vljax",
    version="0.1.0",
    description="JAX-native research codebase for vision-language pre-training",
    python_requires=">=3.10",
    packages=find_packages(include=["vljax", "vljax.*"]),
    install_requires=[
        # NOTE: jax 0.10.2 (newest on the registry here) through 0.11.x (the lent GPU machine).
        "jax>=0.10.2,<0.12",
        "flax>=0.12",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12",
        "grain>=0.2.18",
        "ml-collections>=1.1",
        "clu>=0.0.12",
        "tensorflow-datasets>=4.9",
        "sentencepiece>=0.2",
        "einops>=0.8",
        "numpy>=2.0",
        "scipy>=1.14",
        "matplotlib>=3.9",
        # NOTE: event files are written with tensorboard's own writer: no TensorFlow in the hot path.
        "tensorboard>=2.18",
        # checkpoint import (vljax/convert) and Hugging Face tokenizer.json loading
        "safetensors>=0.4",
        "tokenizers>=0.20",
        "tqdm>=4.60",
        "pillow>=10",
    ],
    extras_require={
        # video (PyAV) and flac (soundfile) decoding for vljax/data/sources
        "media": MEDIA,
        # reference implementations for the parity tests (never used by training)
        "interop": INTEROP,
        "notebooks": NOTEBOOKS,
        # NOTE: pycocoevalcap = reference BLEU / CIDEr-D for tests/test_caption_metrics.py (pure Python scorers);
        # ruff = the pyflakes check of tests/test_lint.py and `ruff format` (ruff.toml).
        "dev": ["pytest>=8", "pytest-xdist>=3", "portpicker>=1.6", "pycocoevalcap==1.2", "ruff>=0.6"]
        + MEDIA + INTEROP + NOTEBOOKS,
    },
    entry_points={"console_scripts": ["vljax=vljax.main:main"]},
)
