"""The digit model behind one small interface; the kit's runtime never imports TensorFlow.

Input: (N, 28, 28) uint8 ink images from `tpskit.edge.reader.normalise` (255 = ink). Output: (N, 11)
float32 probabilities for "0".."9" and "empty". The committed model is int8 end to end and emits
logits; we dequantise and apply softmax here, so confident readings keep their dynamic range.

Runtimes: LiteRT (`ai-edge-litert`) first, `tflite-runtime` as the fallback on platforms that only
have that, imported on first use (Frigate's CPU detector does the same).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

CLASSES: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "empty")
EMPTY = 10
INPUT_SIZE = 28


class DigitModelError(RuntimeError):
    """The model file or the runtime needed to run it is missing or unusable."""


class DigitModel(Protocol):
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) ink images -> float32 (N, 11) probabilities, each row summing to 1."""
        ...


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as e:
            raise DigitModelError(
                "no TFLite runtime: install 'ai-edge-litert' (preferred) or 'tflite-runtime'"
            ) from e
    return Interpreter


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class LiteRTDigitModel:
    """A .tflite digit model run with one interpreter invoke per batch."""

    def __init__(self, path: Path | str, num_threads: int = 1) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DigitModelError(f"digit model not found: {self.path}")
        self._content = self.path.read_bytes()
        interpreter_cls = _interpreter_class()
        try:
            with _without_runtime_banner():
                self._interp = interpreter_cls(model_content=self._content, num_threads=num_threads)
                self._interp.allocate_tensors()  # the runtime announces its delegate here, once per process
        except (ValueError, RuntimeError) as e:
            raise DigitModelError(f"{self.path} is not a usable TFLite model: {e}") from e
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self.input_dtype = np.dtype(inp["dtype"])
        self.output_dtype = np.dtype(out["dtype"])
        self._in_scale, self._in_zero = inp["quantization"]
        self._out_scale, self._out_zero = out["quantization"]
        self._in_rank = len(inp["shape"])
        if tuple(inp["shape"][1:3]) != (INPUT_SIZE, INPUT_SIZE) or out["shape"][-1] != len(CLASSES):
            raise DigitModelError(f"{self.path}: expected input (N, 28, 28[, 1]) and {len(CLASSES)} outputs, got "
                                  f"{inp['shape'].tolist()} -> {out['shape'].tolist()}")
        self._batch = -1
        # Every uint8 pixel value quantised once: a batch is then one table look-up, the same values.
        self._table = self._quantise(np.arange(256, dtype=np.uint8))
        # Softmax is ours unless the model already ends in one (then its output is a distribution).
        self.outputs_logits = not (self.output_dtype == np.int8 and abs(self._out_scale - 1 / 256) < 1e-9
                                   and self._out_zero == -128)

    def _resize(self, n: int) -> None:
        if n != self._batch:
            shape = (n, INPUT_SIZE, INPUT_SIZE) + ((1,) if self._in_rank == 4 else ())
            self._interp.resize_tensor_input(self._in_index, shape)
            self._interp.allocate_tensors()
            self._batch = n

    def _quantise(self, batch: np.ndarray) -> np.ndarray:
        x = batch.astype(np.float32) * (1.0 / 255.0)
        if self.input_dtype == np.float32:
            return x
        q = np.round(x / self._in_scale + self._in_zero)
        info = np.iinfo(self.input_dtype)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != 3 or batch.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected (N, 28, 28) ink images, got {batch.shape}")
        n = len(batch)
        if n == 0:
            return np.zeros((0, len(CLASSES)), np.float32)
        self._resize(n)
        x = self._table[batch] if batch.dtype == np.uint8 else self._quantise(batch)
        if self._in_rank == 4:
            x = x[..., None]
        self._interp.set_tensor(self._in_index, x)
        self._interp.invoke()
        raw = self._interp.get_tensor(self._out_index).reshape(n, len(CLASSES))
        y = raw.astype(np.float32)
        if self.output_dtype != np.float32:
            y = (y - self._out_zero) * self._out_scale
        if self.outputs_logits:
            return softmax(y)
        y = np.maximum(y, 0)
        return (y / np.maximum(y.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)


# What LiteRT's C++ side prints on stderr when it first creates its CPU delegate: not one of our JSON log
# lines, and not news. Everything else it prints is passed on.
_RUNTIME_BANNER = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


@contextlib.contextmanager
def _without_runtime_banner() -> Iterator[None]:
    """Hold file descriptor 2 in a temporary file while the runtime starts, then pass on every line but
    its banner (lines other threads wrote meanwhile arrive a moment late, none is lost)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # no real stderr (captured by a test): nothing to filter
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), fd)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError, OSError):
                sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            held.seek(0)
            rest = b"".join(line for line in held if line.rstrip(b"\r\n") != _RUNTIME_BANNER)
            if rest:
                os.write(fd, rest)


# Runtimes by the `type` a configuration names (only one today; a Coral/NPU backend would go here).
RUNTIMES: dict[str, type[LiteRTDigitModel]] = {"litert": LiteRTDigitModel}


def default_model_path() -> Path:
    from tpskit.models import DIGITS_MODEL

    return DIGITS_MODEL


def load_digit_model(path: Path | str | None = None, *, type: str = "litert", num_threads: int = 1
                     ) -> LiteRTDigitModel:
    """The committed digit model (tpskit.models.DIGITS_MODEL) unless another file is given."""
    try:
        runtime = RUNTIMES[type]
    except KeyError:
        raise DigitModelError(f"unknown digit model type {type!r}; known: {sorted(RUNTIMES)}") from None
    return runtime(path if path is not None else default_model_path(), num_threads=num_threads)


def model_version(path: Path | str | None = None) -> str:
    """Short id of the model file (sha256 prefix) for the signed result envelope."""
    import hashlib  # here, not at the top: it maps OpenSSL's libcrypto (3.6 MB), which `tpskit read` never needs

    p = Path(path) if path is not None else default_model_path()
    return "digits-" + hashlib.sha256(p.read_bytes()).hexdigest()[:12]
