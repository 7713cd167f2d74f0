"""What a failed forward pass says: an input's fault (bisect it out), or a broken device (restart)."""

from __future__ import annotations

from dataclasses import dataclass

# Sticky errors of a CUDA context: after one, every later kernel launch fails, and NVIDIA's
# guidance is to restart the process. torch raises them as torch.AcceleratorError (2.8+) or as a
# RuntimeError carrying the CUDA runtime's message; matched by name and text, so the batching
# core needs no torch import. An out-of-memory error is not one of them: it is retried smaller.
_DEVICE_ERROR_TYPES = frozenset({"AcceleratorError", "CudaError"})
_DEVICE_ERROR_MARKERS = (
    "CUDA error",
    "device-side assert",
    "illegal memory access",
    "illegal instruction",
    "misaligned address",
    "unspecified launch failure",
    "uncorrectable ECC error",
    "CUBLAS_STATUS_EXECUTION_FAILED",
    "CUBLAS_STATUS_INTERNAL_ERROR",
    "CUDNN_STATUS_EXECUTION_FAILED",
    "NCCL error",
)
_NOT_DEVICE_ERROR_TYPES = frozenset({"OutOfMemoryError"})


def is_device_failure(exc: BaseException) -> bool:
    """True for errors of the accelerator itself, after which the process cannot compute again."""
    name = type(exc).__name__
    if name in _NOT_DEVICE_ERROR_TYPES:
        return False
    if name in _DEVICE_ERROR_TYPES:
        return True
    text = str(exc)
    return "out of memory" not in text and any(marker in text for marker in _DEVICE_ERROR_MARKERS)


@dataclass(frozen=True, slots=True)
class Failure:
    """An exception reduced to its type name and message: no traceback, so no frames kept alive."""

    type_name: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        return cls(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")

    def describe(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name
