"""Peak memory measurement that works on CPU as well as CUDA."""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["LiveTensorMeter", "SavedTensorMeter"]


class _Handle:
    __slots__ = ("meter", "key", "tensor")

    def __init__(self, meter: SavedTensorMeter, key: int, tensor: torch.Tensor) -> None:
        self.meter, self.key, self.tensor = meter, key, tensor

    def __del__(self) -> None:
        self.meter._release(self.key)


class SavedTensorMeter:
    """Peak bytes held by autograd graphs (tensors saved for backward), deduplicated by storage.

    CPU has no allocator statistics, and graph memory is exactly what separates the engines:
    everything else (weights, the current state) is the same for all of them. Counts graphs
    built on the current thread, including those built inside custom backward functions.
    Storages are told apart by identity, not address, so it also measures graphs built on the
    ``meta`` device (shapes only: a real model's size in seconds, on any machine).

    Args:
        ignore: tensors not to count when saved (a model's weights, which exist anyway).
    """

    def __init__(self, ignore: Iterable[torch.Tensor] = ()) -> None:
        self.current = 0
        self.peak = 0
        self._live: dict[int, list[int]] = {}
        self._ignore = {t.untyped_storage()._cdata for t in ignore}
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: torch.Tensor) -> _Handle:
        storage = t.untyped_storage()
        key = storage._cdata  # the StorageImpl: shared by views, unique while alive
        if key in self._ignore:
            return _Handle(self, -1, t)
        entry = self._live.get(key)
        if entry is None:
            entry = self._live[key] = [0, storage.nbytes()]
            self.current += entry[1]
            self.peak = max(self.peak, self.current)
        entry[0] += 1
        return _Handle(self, key, t)

    @staticmethod
    def _unpack(handle: _Handle) -> torch.Tensor:
        return handle.tensor

    def _release(self, key: int) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self._live[key]

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    def __enter__(self) -> SavedTensorMeter:
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)


class LiveTensorMeter(TorchDispatchMode):
    """Peak bytes of every tensor alive at once (activations, saved tensors, gradients and
    temporaries) among those created inside the context, deduplicated by storage.

    Device-independent: on the ``meta`` device it gives what a GPU allocator would hold for
    tensors (not kernel workspaces or allocator fragmentation) at any model size, in seconds.
    Tensors created before entering (weights, inputs) are not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage()._cdata
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            # A view of an input (a transposed weight) allocates nothing.
            if isinstance(t, torch.Tensor) and t.untyped_storage()._cdata not in inputs:
                self._track(t.untyped_storage())
        return out

    def _track(self, storage) -> None:
        key = storage._cdata
        if key in self._live:
            return
        size = storage.nbytes()
        self._live.add(key)
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        if key in self._live:
            self._live.discard(key)
            self.current -= size
