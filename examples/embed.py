"""Embed sentences and rank them by cosine similarity to a query.

    python examples/embed.py
"""

from llama_ffi import Llama

docs = [
    "The cat sat on the mat.",
    "Paris is the capital of France.",
    "Stock markets fell sharply today.",
]
query = "What is France's capital city?"

with Llama(embeddings=True) as llm:
    vectors = llm.embed([query, *docs])            # unit-length vectors
    q, rest = vectors[0], vectors[1:]
    scores = [sum(a * b for a, b in zip(q, v)) for v in rest]
    for score, doc in sorted(zip(scores, docs), reverse=True):
        print(f"{score:+.3f}  {doc}")
