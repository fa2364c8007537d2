"""Stream tokens as they are generated, with sampling options and a stop string.

    python examples/stream.py
"""

from llama_ffi import Llama

with Llama(seed=42) as llm:
    prompt = "Here is a short poem about the sea:\n"
    print(prompt, end="", flush=True)
    for piece in llm.stream(prompt, max_tokens=64, temperature=0.7, top_k=40, top_p=0.9,
                            repeat_penalty=1.1, stop=["\n\n"]):
        print(piece, end="", flush=True)
    print()
