"""Per-pixel median over a small stack (ensemble members), by a selection network instead of a sort.

``torch.sort`` / ``torch.median`` over the first dimension of an (N, P) stack with small N and millions of pixels
spend their time on bookkeeping, not comparisons. A sorting network (Batcher's odd-even merge sort) is a fixed
list of compare-exchange steps, each one ``torch.minimum`` / ``torch.maximum`` of two whole rows; keeping only the
steps whose outputs reach the middle rank(s) turns it into a selection network (N = 10: 50 elementwise operations).
Run on column chunks that stay in cache (CPU; one pass on a GPU), it is several times faster than sorting
(git log -p docs/benchmarks.md).

NaN: ``torch.minimum`` / ``maximum`` propagate NaN, and in a sorting network every input reaches every output, so a
pixel with any NaN member comes out NaN; those pixels (usually none) are recomputed by a NaN-ignoring sort.
"""

from __future__ import annotations

from functools import lru_cache

import torch

CHUNK = 1 << 16  # columns per pass on the CPU: 10 members × 64 k float32 = 2.5 MB, cache-resident
# (on a GPU every column goes in one pass: there each compare-exchange costs a kernel launch, not cache misses)


@lru_cache(maxsize=None)
def _merge_sort_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort for ``n`` inputs: compare-exchange pairs (i < j: min → i, max → j)."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


@lru_cache(maxsize=None)
def _selection_network(n: int, ranks: tuple[int, ...]) -> tuple[tuple[int, int, bool, bool], ...]:
    """The steps of the sorting network that the given output ranks depend on: (i, j, need min, need max)."""
    needed = set(ranks)
    steps = []
    for i, j in reversed(_merge_sort_network(n)):
        low, high = i in needed, j in needed
        if low or high:
            steps.append((i, j, low, high))
            needed |= {i, j}
    return tuple(reversed(steps))


def median_rows(stack: torch.Tensor, lower: bool = False) -> torch.Tensor:
    """Median over dim 0 of an (N, …) stack (for an even N the mean of the middle two, or with ``lower`` the lower
    of them, as ``torch.median``), differentiable, NaN-propagating (any NaN member → NaN)."""
    rows = list(stack.unbind(0))
    n = len(rows)
    ranks = ((n - 1) // 2,) if lower else tuple(sorted({(n - 1) // 2, n // 2}))
    for i, j, low, high in _selection_network(n, ranks):
        a, b = rows[i], rows[j]
        if low:
            rows[i] = torch.minimum(a, b)
        if high:
            rows[j] = torch.maximum(a, b)
    if len(ranks) == 1:
        return rows[ranks[0]]
    return 0.5 * (rows[ranks[0]] + rows[ranks[1]])


def median_and_mad(stack: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None,
                   mad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """NaN-ignoring median and median absolute deviation (None without ``mad``: half the work) over dim 0 of
    (N, …) ``stack``, optionally of ``scale[i] · stack[i] + shift[i]`` (applied chunk by chunk, never to the whole
    stack at once)."""
    n = stack.shape[0]
    flat = stack.reshape(n, -1)
    scale = scale.reshape(n, 1).to(flat.dtype) if scale is not None else None
    shift = shift.reshape(n, 1).to(flat.dtype) if shift is not None else None
    centre = torch.empty(flat.shape[1], dtype=flat.dtype, device=flat.device)
    spread = torch.empty_like(centre) if mad else None
    step = CHUNK if flat.device.type == "cpu" else max(1, flat.shape[1])
    for start in range(0, flat.shape[1], step):
        columns = slice(start, start + step)
        # the affine map twice rather than a copy kept alive: the freed chunk's memory is reused while cache-hot
        middle = _middle_in_place(_affine(flat[:, columns], scale, shift), out=centre[columns])
        if spread is not None:
            _middle_in_place(_affine(flat[:, columns], scale, shift).sub_(middle).abs_(), out=spread[columns])
    # NaN members (or inf − inf) leave NaN: one sum tells whether to look for them (a full isnan pass costs ~1 ms)
    total = centre.sum() + (spread.sum() if spread is not None else 0.0)
    if torch.isnan(total):
        holes = (torch.isnan(centre) | (torch.isnan(spread) if spread is not None else False)).nonzero().squeeze(1)
        columns = _affine(flat[:, holes], scale, shift)
        centre[holes] = middle = _sorted_nanmedian(columns)
        if spread is not None:
            spread[holes] = _sorted_nanmedian((columns - middle).abs())
    shape = stack.shape[1:]
    return centre.reshape(shape), (spread.reshape(shape) if spread is not None else None)


def _middle_in_place(chunk: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``median_rows(chunk)`` written to ``out``, overwriting ``chunk``: each compare-exchange writes its minimum
    to a spare row and its maximum over one input, so the network allocates nothing (about 1.4× faster than
    allocating a row per step on 10 × 768² members; git log -p docs/benchmarks.md)."""
    rows = list(chunk.unbind(0))
    n = len(rows)
    ranks = tuple(sorted({(n - 1) // 2, n // 2}))
    spare = torch.empty_like(rows[0])
    for i, j, low, high in _selection_network(n, ranks):
        a, b = rows[i], rows[j]
        if low and high:
            torch.minimum(a, b, out=spare)
            torch.maximum(a, b, out=b)
            rows[i], spare = spare, a
        elif low:
            torch.minimum(a, b, out=a)
        else:
            torch.maximum(a, b, out=b)
    if len(ranks) == 1:
        return out.copy_(rows[ranks[0]])
    return torch.add(rows[ranks[0]], rows[ranks[1]], out=out).mul_(0.5)


def _affine(columns: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None) -> torch.Tensor:
    """``scale · columns + shift`` as a new tensor (the in-place selection may overwrite it)."""
    if scale is not None:
        columns = columns * scale
    if shift is not None:
        return columns + shift if scale is None else columns.add_(shift)
    return columns if scale is not None else columns.clone()


def _sorted_nanmedian(stack: torch.Tensor) -> torch.Tensor:
    """The NaN-ignoring median of (N, P) columns by sorting (NaN sorts last)."""
    ordered = torch.sort(stack, dim=0).values
    count = (~torch.isnan(stack)).sum(dim=0, keepdim=True)  # ±inf are values: they sort among them
    lower = (count - 1).clamp(min=0) // 2
    upper = (count // 2).clamp(max=stack.shape[0] - 1)
    middle = 0.5 * (ordered.gather(0, lower) + ordered.gather(0, upper))[0]
    return torch.where(count[0] > 0, middle, torch.full_like(middle, float("nan")))
