"""Build for megacpt: the library, its extras, and the pybind11 extension from csrc/.

The C++ extension is compiled here, at install time (``pip install -e .``), never at run time.
"""

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

ext_modules = [
    Pybind11Extension(
        "megacpt.data._indexed_builder",
        ["csrc/indexed_builder.cpp"],
        depends=["csrc/indexed_builder_core.h"],  # rebuilt when the core changes; shipped in the sdist
        cxx_std=17,
        extra_compile_args=["-O3"],
    ),
    Pybind11Extension(
        "megacpt.data._jsonl_scan",
        ["csrc/jsonl_scan.cpp"],
        depends=["csrc/jsonl_scan_core.h"],
        cxx_std=17,
        extra_compile_args=["-O3"],
    ),
    Pybind11Extension("megacpt.clean._kernels", ["csrc/clean_kernels.cpp"], cxx_std=17, extra_compile_args=["-O3"]),
]

setup(
    name="megacpt",
    version="0.1.0",
    description="Continual pretraining of LLMs into new languages on Megatron-core",
    python_requires=">=3.10",
    packages=find_packages(include=["megacpt", "megacpt.*"]),
    include_package_data=True,
    # the quickstart's text and configs: examples/ through the link megacpt/recipes/examples
    package_data={
        "megacpt.recipes": [
            "examples/*.yaml",
            "examples/*/*.yaml",
            "examples/corpora/*.md",
            "examples/corpora/*/*.jsonl",
        ]
    },
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    install_requires=[
        "torch>=2.4",
        "megatron-core>=0.16.1,<0.17",  # the tested version: megacpt.compat pins its internals
        "numpy>=1.26",
        "pyyaml>=6",
        "psutil>=5.9",  # without it dist_checkpointing's async writer dies and save() hangs
        "tqdm>=4.66",
        "tensorboard>=2.15",
        "matplotlib>=3.8",
        "transformers>=4.45",
        "tokenizers>=0.20",
        "sentencepiece>=0.2",
        "protobuf>=4",
        "safetensors>=0.4",
        "mistral-common>=1.5",
        "py3langid>=0.4,<0.5",  # offline language id, model inside the wheel (its automaton walked in C++)
        "zstandard>=0.22",
        "pyarrow>=15",
        "regex>=2023.10",  # Unicode Script_Extensions for the expansion's script filter
        "tiktoken>=0.7",  # tiktoken-format tokenizers (preprocess)
        "gigatoken>=0.10,<0.11",  # fastest exact tokenizer backend (preprocess), verified per run
        "gguf>=0.10",  # reading GGUF checkpoints (SmolLM2 ships as one)
        "accelerate>=1.0",  # transformers' GGUF loader needs it
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2.3", "pybind11>=2.12", "ruff>=0.6", "mypy>=1.10", "lm-eval>=0.4.13,<0.5"],
        "gpu": ["transformer-engine[pytorch]>=2.0"],
        "mpi": ["mpi4py>=3.1"],
        "morph": ["fugashi>=1.3", "unidic-lite>=1.0.8", "kiwipiepy>=0.17"],
        # megacpt clean runs on datatrove (its executors, steps and MinHash file formats: minor version pinned);
        # KenLM's scorer as prebuilt wheels: the perplexity filter runs ~15x faster with it
        "clean": ["datatrove>=0.10.1,<0.11", "ufal-kenlm>=26.4"],
    },
    entry_points={"console_scripts": ["megacpt=megacpt.cli:main"]},
)
