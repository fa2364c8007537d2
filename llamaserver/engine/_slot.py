"""``Slot``: one sequence of the shared context, and the request it is serving."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._seqcache import SequenceCache
from .types import SlotInfo

if TYPE_CHECKING:
    from llama_ffi import Batch, Context

    from ._generation import Generation
    from ._job import Job
    from ._prefix_cache import PrefixCache
    from .types import MediaPiece

__all__ = ["Slot", "IDLE", "PROMPT", "GENERATING"]

IDLE = 0
PROMPT = 1       # prompt tokens still to evaluate
GENERATING = 2   # one token per step


class Slot:
    __slots__ = ("id", "seq", "n_ctx", "cache", "state", "job", "gen", "lora", "prompt",
                 "i_prompt", "i_batch", "n_sys", "n_keep", "can_shift", "sampled", "media",
                 "next_media", "draft")

    def __init__(self, id: int, ctx: Context, n_ctx: int, index: PrefixCache | None) -> None:
        self.id = id
        self.seq = id
        self.n_ctx = n_ctx
        self.cache = SequenceCache(ctx, id, index)   # lives across requests
        self.state = IDLE
        self.job: Job | None = None
        self.gen: Generation | None = None
        self.lora: tuple[float, ...] = ()     # the scales of the request being served
        self.prompt: list[int] = []
        self.i_prompt = 0                     # prompt tokens already in the sequence
        self.i_batch = -1                     # this step's batch row with logits, if any
        self.n_sys = 0                        # the shared prefix at the start of the prompt
        self.n_keep = 0                       # tokens a context shift keeps
        self.can_shift = False
        self.sampled = -1                     # the token to decode next
        self.draft: list[int] = []            # this step's speculative tokens after it
        self.media: dict[int, MediaPiece] = {}  # the prompt's media pieces by offset
        self.next_media = 0                   # where the next media piece starts

    def begin(self, job: Job, gen: Generation, prompt: list[int], n_reuse: int, n_sys: int,
              n_keep: int, can_shift: bool, media: dict[int, MediaPiece]) -> None:
        self.job = job
        self.gen = gen
        self.lora = job.lora
        self.state = PROMPT
        self.prompt = prompt
        self.i_prompt = n_reuse
        self.n_sys = n_sys
        self.n_keep = n_sys + n_keep
        self.can_shift = can_shift
        self.sampled = -1
        self.i_batch = -1
        self.draft = []
        self.media = media
        self._next_media()
        job.id_slot = self.id

    def end(self) -> None:
        """The request is over (finished, failed or cancelled); the cache stays."""
        gen = self.gen
        if gen is not None:
            gen.close()
        job = self.job
        if job is not None:
            job.drop()  # what the request still holds (its media)
        self.gen = None
        self.job = None
        self.prompt = []
        self.media = {}
        self.state = IDLE
        self.i_batch = -1
        self.cache.end_request()

    @property
    def at_context_limit(self) -> bool:
        """No room for another token, and none can be made."""
        # the token list's length, not len(cache): this runs for every generated token
        return len(self.cache.tokens) + 1 >= self.n_ctx and not self.can_shift

    def feed_prompt(self, batch: Batch, budget: int) -> int:
        """Add up to ``budget`` prompt tokens to ``batch``, up to the next media piece (decoded
        on its own: see ``media_due``); the prompt's last token asks for logits."""
        prompt, start = self.prompt, self.i_prompt
        take = min(budget, self.next_media - start)
        if take <= 0:
            return 0
        end = start + take
        chunk = prompt[start:end]
        pos = self.cache.extend(chunk)
        i_last = batch.add_tokens(chunk, pos, self.seq, logits_last=end == len(prompt))
        if end == len(prompt):
            self.i_batch = i_last
        self.i_prompt = end
        return take

    def media_due(self) -> MediaPiece | None:
        """The media piece the prompt has reached, if any."""
        return self.media.get(self.i_prompt) if self.i_prompt == self.next_media else None

    def media_done(self, piece: MediaPiece) -> None:
        """``piece`` was decoded into the sequence."""
        end = self.i_prompt + piece.n_tokens
        self.cache.extend_media(self.prompt[self.i_prompt:end], piece.n_pos)
        self.i_prompt = end
        self._next_media()

    def _next_media(self) -> None:
        at = self.i_prompt
        self.next_media = min((o for o in self.media if o >= at), default=len(self.prompt))

    def shift_context(self) -> bool:
        """Make room by a context shift (False if it cannot): the shared prefix and ``n_keep``
        stay."""
        if not self.can_shift:
            return False
        # The shared prefix stays, whatever n_keep says: every request is built on it.
        if self.cache.shift(max(min(self.n_keep, self.n_ctx - 4), self.n_sys)):
            assert self.gen is not None
            self.gen.truncated = True
            return True
        return False

    def info(self) -> SlotInfo:
        gen, job = self.gen, self.job
        return SlotInfo(
            id=self.id, is_processing=self.state != IDLE,
            id_task=job.id if job is not None else -1,
            request=job.request if job is not None else None, lora=self.lora, n_ctx=self.n_ctx,
            n_cached_tokens=len(self.cache), n_prompt_tokens=len(self.prompt),
            n_prompt_tokens_cache=gen.n_cached if gen is not None else 0,
            n_prompt_tokens_processed=max(0, self.i_prompt - gen.n_cached) if gen is not None else 0,
            n_decoded=gen.n_decoded if gen is not None else 0,
            n_remain=gen.n_remain if gen is not None else -1,
            stopped_eos=gen.stopped_eos if gen is not None else False,
            stopped_limit=gen.stopped_limit if gen is not None else False,
            stopped_word=gen.stopped_word if gen is not None else False,
            stopping_word=gen.stopping_word if gen is not None else "",
            prompt_cache_hits=self.cache.hits, prompt_cache_tokens_reused=self.cache.reused)
