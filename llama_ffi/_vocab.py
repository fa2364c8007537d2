"""``Vocab``: a model's vocabulary and tokenizer (borrowed from its ``Model``).

libllama aborts the process on an out-of-range token id in several vocab
functions, so every id is checked here before it reaches C.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

from llama_ffi._errors import InvalidTokenError, LlamaError, describe
from llama_ffi._ffi import ffi, lib
from llama_ffi._special_split import MIN_BYTES, SpecialSplitter

if TYPE_CHECKING:
    from llama_ffi._model import Model

_INT32_MAX = 2**31 - 1
_INT32_MIN = -(2**31)

VOCAB_TYPES = {
    lib.LLAMA_VOCAB_TYPE_NONE: "none",
    lib.LLAMA_VOCAB_TYPE_SPM: "spm",
    lib.LLAMA_VOCAB_TYPE_BPE: "bpe",
    lib.LLAMA_VOCAB_TYPE_WPM: "wpm",
    lib.LLAMA_VOCAB_TYPE_UGM: "ugm",
    lib.LLAMA_VOCAB_TYPE_RWKV: "rwkv",
    lib.LLAMA_VOCAB_TYPE_PLAMO2: "plamo2",
}


class Vocab:
    """Tokenizer and special tokens of a model.  Valid while its model is open.

    Special token attributes are ``-1`` when the model has no such token.
    """

    def __init__(self, model: Model) -> None:
        self._model = model
        ptr = lib.llama_model_get_vocab(model._require())
        self._ptr: Any = ptr
        self.n_tokens: int = lib.llama_vocab_n_tokens(ptr)
        self.bos: int = lib.llama_vocab_bos(ptr)
        self.eos: int = lib.llama_vocab_eos(ptr)
        self.eot: int = lib.llama_vocab_eot(ptr)
        self.nl: int = lib.llama_vocab_nl(ptr)
        self.sep: int = lib.llama_vocab_sep(ptr)
        self.pad: int = lib.llama_vocab_pad(ptr)
        self.cls: int = self.bos  # libllama: "CLS is equivalent to BOS"
        # fill-in-the-middle: prefix, suffix, middle, padding, repository name, file separator
        self.fim_pre: int = lib.llama_vocab_fim_pre(ptr)
        self.fim_suf: int = lib.llama_vocab_fim_suf(ptr)
        self.fim_mid: int = lib.llama_vocab_fim_mid(ptr)
        self.fim_pad: int = lib.llama_vocab_fim_pad(ptr)
        self.fim_rep: int = lib.llama_vocab_fim_rep(ptr)
        self.fim_sep: int = lib.llama_vocab_fim_sep(ptr)
        self.add_bos: bool = bool(lib.llama_vocab_get_add_bos(ptr))
        self.add_eos: bool = bool(lib.llama_vocab_get_add_eos(ptr))
        self.add_sep: bool = bool(lib.llama_vocab_get_add_sep(ptr))  # a SEP between two texts
        self.type_id: int = lib.llama_vocab_type(ptr)
        self.type: str = VOCAB_TYPES.get(self.type_id, "unknown")
        # token -> piece, per value of `special`: pieces never change, and
        # token_to_piece runs once per generated token.
        self._pieces: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})
        self._eog: tuple[int, ...] | None = None
        self._splitters: dict[bool, SpecialSplitter] = {}  # by parse_special, built on first use

    def _vocab(self) -> Any:
        if self._model._ptr is None:
            raise LlamaError("the model of this vocabulary is closed")
        return self._ptr

    def __repr__(self) -> str:
        return f"<Vocab {self.type} n_tokens={self.n_tokens}>"

    # ------------------------------------------------------------------ ids

    def _check(self, tok: Any) -> int:
        if isinstance(tok, bool) or not isinstance(tok, int) or not 0 <= tok < self.n_tokens:
            raise InvalidTokenError(f"invalid token id {describe(tok)} (vocabulary has {self.n_tokens} tokens)")
        return tok

    def check_tokens(self, tokens: Iterable[Any]) -> None:
        """Raise ``InvalidTokenError`` if any id is outside ``[0, n_tokens)``."""
        n = self.n_tokens
        for tok in tokens:
            if isinstance(tok, bool) or not isinstance(tok, int) or not 0 <= tok < n:
                raise InvalidTokenError(f"invalid token id {describe(tok)} (vocabulary has {n} tokens)")

    def is_eog(self, tok: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, ...)."""
        return bool(lib.llama_vocab_is_eog(self._vocab(), self._check(tok)))

    def is_control(self, tok: int) -> bool:
        return bool(lib.llama_vocab_is_control(self._vocab(), self._check(tok)))

    @property
    def eog_tokens(self) -> tuple[int, ...]:
        """Every end-of-generation token of the vocabulary."""
        if self._eog is None:
            ptr = self._vocab()
            self._eog = tuple(t for t in range(self.n_tokens) if lib.llama_vocab_is_eog(ptr, t))
        return self._eog

    def suppress_tokens(self) -> list[int]:
        """Tokens the model file asks never to sample (``tokenizer.ggml.suppress_tokens``)."""
        count = ffi.new("int32_t *")
        arr = lib.llama_vocab_get_suppress_tokens(self._vocab(), count)
        return list(ffi.unpack(arr, count[0])) if arr and count[0] > 0 else []

    def token_text(self, tok: int) -> bytes:
        """The raw vocabulary entry of ``tok`` (before any byte decoding)."""
        text = lib.llama_vocab_get_text(self._vocab(), self._check(tok))
        return ffi.string(text) if text else b""

    # ------------------------------------------------------------------ text

    def tokenize(self, text: str | bytes, *, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text``; ``add_special`` adds BOS/EOS as the model wants, ``parse_special``
        turns special-token text (e.g. ``<|im_start|>``) into those tokens.

        A long text is tokenized in pieces cut after special-token texts (``_special_split``):
        the same tokens, without libllama's quadratic cost in their number."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if len(data) < MIN_BYTES or (add_special and self.add_eos) or self.type not in ("bpe", "spm"):
            return self._tokenize(data, add_special, parse_special)
        splitter = self._splitters.get(parse_special)
        if splitter is None:
            splitter = self._splitters[parse_special] = SpecialSplitter(self, parse_special)
        tokens: list[int] = []
        for i, piece in enumerate(splitter.split(data)):
            tokens += self._tokenize(piece, add_special and i == 0, parse_special)
        return tokens

    def _tokenize(self, data: bytes, add_special: bool, parse_special: bool) -> list[int]:
        if len(data) > _INT32_MAX:
            raise ValueError("text too long to tokenize")
        ptr = self._vocab()
        capacity = len(data) + 8
        while True:
            buf = ffi.new("llama_token[]", capacity)
            n = lib.llama_tokenize(ptr, data, len(data), buf, capacity, add_special, parse_special)
            if n >= 0:
                return ffi.unpack(buf, n)
            if n == _INT32_MIN:
                raise ValueError("text produces more tokens than libllama can count")
            capacity = -n

    def tokenize_prompt(self, prompt: str | Sequence[int | str], *, add_special: bool = True,
                        parse_special: bool = True) -> tuple[list[int], bool]:
        """A prompt as llama-server takes it: text, token ids, or a mix of both.

        Strings are tokenized in place; as in llama.cpp, special tokens (BOS) are added only
        when the prompt is a string or begins with one.  Returns the tokens and whether a BOS
        was added; ``InvalidTokenError`` for an id outside the vocabulary, ``ValueError`` for
        anything that is neither.
        """
        if isinstance(prompt, str):
            tokens = self.tokenize(prompt, add_special=add_special, parse_special=parse_special)
            return tokens, self._starts_with_added_bos(tokens, add_special)
        tokens = []
        bos_added = False
        for i, item in enumerate(prompt):
            if isinstance(item, str):
                special = add_special and i == 0
                piece = self.tokenize(item, add_special=special, parse_special=parse_special)
                bos_added = bos_added or self._starts_with_added_bos(piece, special)
                tokens.extend(piece)
            elif isinstance(item, int) and not isinstance(item, bool):
                tokens.append(self._check(item))
            else:
                raise ValueError(f"prompt items must be strings or token ids, not {describe(item)}")
        return tokens, bos_added

    def _starts_with_added_bos(self, tokens: list[int], add_special: bool) -> bool:
        return bool(add_special and tokens and self.add_bos and tokens[0] == self.bos)

    def token_to_piece(self, tok: int, *, special: bool = False) -> bytes:
        """The bytes of one token (may be part of a UTF-8 sequence); ``special`` renders control tokens."""
        cache = self._pieces[1 if special else 0]
        piece = cache.get(tok) if type(tok) is int else None
        if piece is None:
            tok = self._check(tok)
            piece = self._piece(tok, special)
            cache[int(tok)] = piece
        return piece

    def _piece(self, tok: int, special: bool) -> bytes:
        ptr = self._vocab()
        size = 32
        while True:
            buf = ffi.new("char[]", size)
            n = lib.llama_token_to_piece(ptr, tok, buf, size, 0, special)
            if n >= 0:
                return ffi.unpack(buf, n)
            size = -n

    def detokenize(self, tokens: Iterable[int], *, remove_special: bool = False, unparse_special: bool = False) -> str:
        """Text of ``tokens`` (invalid UTF-8 is replaced)."""
        tokens = list(tokens)
        self.check_tokens(tokens)
        if not tokens:
            return ""
        ptr = self._vocab()
        arr = ffi.new("llama_token[]", tokens)
        size = 8 * len(tokens) + 16
        while True:
            buf = ffi.new("char[]", size)
            n = lib.llama_detokenize(ptr, arr, len(tokens), buf, size, remove_special, unparse_special)
            if n >= 0:
                return ffi.unpack(buf, n).decode("utf-8", "replace")
            size = -n
