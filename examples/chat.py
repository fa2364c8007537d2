"""An interactive chat in the terminal, using the model's own chat template.

    python examples/chat.py            (empty line or Ctrl-D to quit)
"""

from llama_ffi import Llama

with Llama(n_ctx=4096) as llm:
    messages = [{"role": "system", "content": "You are a helpful, concise assistant."}]
    while True:
        try:
            user = input("you> ").strip()
        except EOFError:
            break
        if not user:
            break
        messages.append({"role": "user", "content": user})
        print("bot> ", end="", flush=True)
        reply = ""
        for piece in llm.chat(messages, max_tokens=256, stream=True, temperature=0.7):
            print(piece, end="", flush=True)
            reply += piece
        print()
        messages.append({"role": "assistant", "content": reply})
