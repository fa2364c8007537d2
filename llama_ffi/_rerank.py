"""``RerankPrompt``: a query and a document as one input of a reranking model.

A reranker (a cross-encoder, run by an ``Embedder`` with ``pooling="rank"``) reads the query and
one document together and scores the pair. The pair is laid out as llama.cpp's server lays it
out, so that scores agree with it:

- a model with a ``rerank`` template (``tokenizer.chat_template.rerank``, as Qwen3-Reranker's
  conversion writes): the template's text with ``{query}`` and then ``{document}`` replaced,
  tokenized without added special tokens, special-token text parsed;
- any other (BERT and XLM-RoBERTa cross-encoders such as bge-reranker): BOS, query, EOS, SEP,
  document, EOS, each special token only where the vocabulary asks for it (``add_bos``,
  ``add_eos``, ``add_sep``) and SEP standing in for a missing EOS; the texts are plain text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from llama_ffi._model import Model


class RerankPrompt:
    """How ``model`` reads a (query, document) pair; ``ValueError`` when it cannot rerank.

    llama.cpp refuses reranking without a BOS token, or without an EOS or SEP token or a
    rerank template to mark where the query ends; so does this: scores from a pair the model
    cannot tell apart would mean nothing.
    """

    def __init__(self, model: Model) -> None:
        vocab = model.vocab
        self.template: str | None = model.chat_template("rerank")
        if vocab.bos < 0:
            raise ValueError(f"{model.path.name} cannot rerank: its vocabulary has no BOS token")
        if self.template is None and vocab.eos < 0 and vocab.sep < 0:
            raise ValueError(f"{model.path.name} cannot rerank: its vocabulary has no EOS or SEP "
                             "token and the model has no rerank template")
        self._vocab = vocab

    def tokenize(self, query: str, documents: Sequence[str]) -> list[list[int]]:
        """The tokens of each (query, document) pair, in the order of ``documents``."""
        vocab = self._vocab
        template = self.template
        if template is not None:
            # One replacement after the other, as llama.cpp does: the same text gives the
            # same tokens (even for a query that itself contains "{document}").
            return [vocab.tokenize(template.replace("{query}", query).replace("{document}", doc),
                                   add_special=False, parse_special=True)
                    for doc in documents]
        eos = vocab.eos if vocab.eos >= 0 else vocab.sep
        head = [vocab.bos] if vocab.add_bos else []
        head += vocab.tokenize(query, add_special=False)
        if vocab.add_eos:
            head.append(eos)
        if vocab.add_sep and vocab.sep >= 0:  # llama.cpp would pass -1 on, and crash
            head.append(vocab.sep)
        tail = [eos] if vocab.add_eos else []
        return [[*head, *vocab.tokenize(doc, add_special=False), *tail] for doc in documents]
