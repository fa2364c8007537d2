"""POST /tokenize and POST /detokenize."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ..engine import Engine
from ._body import ApiModel, JsonInt
from ._context import ApiContext, json_response
from ._intake import read_model


class TokenizeRequest(ApiModel):
    content: str | list[JsonInt | str]
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False


class DetokenizeRequest(ApiModel):
    tokens: list[JsonInt] = []


def tokenize(engine: Engine, req: TokenizeRequest) -> list[Any]:
    vocab = engine.vocab
    # text, or a mix of text and token ids tokenized piece by piece (InvalidTokenError: 400)
    tokens, _ = vocab.tokenize_prompt(req.content, add_special=req.add_special,
                                      parse_special=req.parse_special)
    if not req.with_pieces:
        return tokens
    pieces = []
    for tok in tokens:
        raw = vocab.token_to_piece(tok, special=True)
        try:
            piece: str | list[int] = raw.decode("utf-8")
        except UnicodeDecodeError:  # part of a multi-byte character: send the bytes
            piece = list(raw)
        pieces.append({"id": tok, "piece": piece})
    return pieces


def detokenize(engine: Engine, tokens: list[int]) -> str:
    engine.vocab.check_tokens(tokens)  # InvalidTokenError -> 400
    return engine.vocab.detokenize(tokens, remove_special=False, unparse_special=True)


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    @bp.post("/tokenize")
    async def tokenize_view() -> Response:
        req = await read_model(ctx, TokenizeRequest)
        engine = ctx.ready_engine()
        return json_response({"tokens": await ctx.run_blocking(tokenize, engine, req)})

    @bp.post("/detokenize")
    async def detokenize_view() -> Response:
        req = await read_model(ctx, DetokenizeRequest)
        engine = ctx.ready_engine()
        return json_response({"content": await ctx.run_blocking(detokenize, engine,
                                                                 list(req.tokens))})
