"""Generate text from a prompt with the library (no server).

    python examples/generate.py "The capital of France is"
"""

import sys

from llama_ffi import Llama

prompt = sys.argv[1] if len(sys.argv) > 1 else "The three primary colours are"

with Llama() as llm:                                   # the default model (SmolLM2-135M-Instruct)
    print(prompt + llm.generate(prompt, max_tokens=32, temperature=0))
