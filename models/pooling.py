"""pool(): token embeddings -> one vector per input, as sentence-transformers' Pooling computes it.

Every mode works in float32 whatever the model's dtype: a float16 sum over a few hundred tokens
overflows to inf (and inf / inf = NaN, which JSON writes as null). Inputs are right-padded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pooling_mask(attention_mask: torch.Tensor, prompt_lengths: torch.Tensor | None) -> torch.Tensor:
    """[batch, seq] bool: the tokens pooling reads. Prompt tokens are left out when
    `prompt_lengths` is given (a pooling with include_prompt false): sentence-transformers zeroes
    the first prompt_length positions of the attention mask (Pooling._exclude_prompt_from_mask)."""
    mask = attention_mask.bool()
    if prompt_lengths is not None:
        positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
        mask &= positions >= prompt_lengths.unsqueeze(1)
    return mask


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """[batch, seq, dim] hidden states and a [batch, seq] mask -> [batch, dim * len(modes)] float32.

    Modes are concatenated in the order given, as sentence-transformers does.
    """
    hidden = hidden.float()
    weights = mask.to(torch.float32).unsqueeze(-1)
    return torch.cat([_POOLERS[mode](hidden, mask, weights) for mode in modes], dim=-1)


def _cls(hidden: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    # The first pooled token: [CLS], or the first token after the prompt when prompts are excluded.
    first = mask.to(torch.int32).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def _max(hidden: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values


def _mean(hidden: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def _mean_sqrt_len(hidden: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (hidden * weights).sum(dim=1) / torch.sqrt(weights.sum(dim=1).clamp(min=1e-9))


def _weighted_mean(hidden: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    # Position weights 1..seq from the first token; excluded prompt tokens keep the others' weights.
    positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=torch.float32)
    weighted = weights * positions.view(1, -1, 1)
    return (hidden * weighted).sum(dim=1) / weighted.sum(dim=1).clamp(min=1e-9)


def _last_token(hidden: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    # The last pooled token, wherever the padding starts; a row with nothing pooled gives zeros
    # (sentence-transformers gathers from hidden * mask).
    seq_len = hidden.shape[1]
    flipped = mask.flip(1).to(torch.int32)
    last = seq_len - 1 - flipped.argmax(dim=1)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last] * weights[rows, last]


_POOLERS = {
    "cls": _cls,
    "max": _max,
    "mean": _mean,
    "mean_sqrt_len_tokens": _mean_sqrt_len,
    "weightedmean": _weighted_mean,
    "lasttoken": _last_token,
}
