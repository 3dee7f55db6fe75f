"""Peak memory measurement that works on CPU as well as CUDA."""

from __future__ import annotations

import torch

__all__ = ["SavedTensorMeter"]


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
    """

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self._live: dict[int, list[int]] = {}
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: torch.Tensor) -> _Handle:
        storage = t.untyped_storage()
        key = storage.data_ptr()
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
