"""magnet-jax: MAGNeT (masked non-autoregressive music/sound generation) in JAX/Flax NNX."""
from setuptools import find_packages, setup

CORE = [
    "jax>=0.10.2", "jaxlib>=0.10.2", "flax>=0.12.8", "optax>=0.2.8", "orbax-checkpoint>=0.12.8",
    "ml-collections>=1.1.0", "numpy>=2.0", "ml_dtypes>=0.4", "safetensors>=0.4", "huggingface_hub>=0.30",
    "transformers>=5.0", "pyyaml", "absl-py", "tqdm",
]
EXTRAS = {
    # Only the reference side of the parity tests: magnet-jax reads `.bin` checkpoints without torch.
    # CPU wheel: `pip install torch==2.13.0` (a plain newer `torch` pulls a multi-GB CUDA build).
    "torch": ["torch>=2.6"],
    "audio": ["soundfile>=0.12", "soxr>=0.3", "matplotlib"],
    "data": ["tensorflow-datasets>=4.9.10", "array-record>=0.8", "grain>=0.2.18", "soundfile>=0.12", "soxr>=0.3",
             "tensorboardX>=2.6"],
    "beam": ["apache-beam>=2.60"],
    "app": ["gradio>=5.0", "matplotlib"],
    # Building the bundled model's corpus (tools/build_corpus.py; also apt: fluidsynth fluid-soundfont-gm).
    "corpus": ["music21>=9", "soundfile>=0.12"],
    # tools/evaluate.py / magnet_jax.eval (MIR features, family classifier, Frechet distance, plots).
    "eval": ["librosa>=0.10", "scikit-learn>=1.3", "scipy>=1.10", "soundfile>=0.12", "soxr>=0.3", "matplotlib"],
    "dev": ["pytest>=8", "pytest-timeout", "pytest-xdist", "nbclient", "nbformat", "ipykernel", "ruff>=0.6", "selenium>=4.20"],
}

setup(
    name="magnet-jax",
    version="0.1.0",
    description="MAGNeT (Ziv et al., ICLR 2024) in JAX/Flax NNX: span-masked non-autoregressive music generation",
    packages=find_packages(include=["magnet_jax", "magnet_jax.*"]),
    python_requires=">=3.11",
    # bundled/weights/: the bundled offline model (lm/ codec/ t5/ + bundled.json) once tools/make_bundled.sh built it
    package_data={"magnet_jax": ["text/assets/*/*", "bundled/weights/*", "bundled/weights/*/*"]},
    install_requires=CORE,
    extras_require=EXTRAS,
)
