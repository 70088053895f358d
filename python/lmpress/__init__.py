"""lmpress: compress large language models and run them (Python bindings of liblmpress).

    import lmpress
    model = lmpress.Model.load("path/to/model")
    for token_id, text in model.generate("Once upon a time", max_tokens=32):
        print(text, end="", flush=True)

Every call that computes releases the GIL. Failures raise lmpress.Error (a
RuntimeError) with the library's message; InvalidArgument (also a ValueError),
Cancelled, OutOfMemory (also a MemoryError) and InternalError map its status
codes. A model may be shared by threads; a Context or Sampler is used by one
thread at a time (calls from several threads wait for each other).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ._errors import Cancelled, Error, InternalError, InvalidArgument, OutOfMemory

try:
    from . import _lmpress
except ImportError as e:  # pragma: no cover
    if not any(n.startswith("_lmpress.") and n.endswith(".so") for n in os.listdir(os.path.dirname(__file__))):
        raise ImportError(
            f"lmpress: the extension lmpress._lmpress is not built in {os.path.dirname(__file__)} (a source "
            "checkout on sys.path shadows the installed package?); install with "
            "pip install --no-build-isolation --no-index ./python"
        ) from e
    raise

__all__ = [
    "__version__",
    "API_VERSION",
    "Error",
    "InvalidArgument",
    "Cancelled",
    "OutOfMemory",
    "InternalError",
    "set_threads",
    "get_threads",
    "library_version",
    "Model",
    "ModelInfo",
    "Context",
    "Sampler",
    "Token",
    "Generation",
    "GenerateResult",
    "perplexity",
    "kld",
    "compare",
    "quantize",
    "prune",
    "convert",
    "lowrank",
    "chat_template",
    "last_report",
]

#: The version of the liblmpress loaded ("0.1.0").
__version__: str = _lmpress.version()
#: LMPRESS_API_VERSION this package was built for (equal to the library's, checked at import).
API_VERSION: int = _lmpress.API_VERSION

PathLike = Union[str, "os.PathLike[str]"]
TokensLike = Union[Sequence[int], "np.ndarray"]
#: progress(stage, done, total): return False to cancel (lmpress.Cancelled); None or True go on.
ProgressCallback = Callable[[str, int, int], Optional[bool]]

_INT32 = np.iinfo(np.int32)


def library_version() -> str:
    """The version of the liblmpress loaded."""
    return _lmpress.version()


def set_threads(n: int) -> None:
    """Threads for compute (0: all cores). Applies to every thread that calls lmpress from now on
    (the library applies it on each)."""
    _lmpress.set_threads(int(n))


def last_report() -> dict:
    """The report of this thread's last quantize, prune, lowrank, convert, perplexity,
    generate_text or complete call, as the command line's --json prints it (per-tensor errors, sizes, bits per weight, peak memory,
    timings); {} before any."""
    text = _lmpress.last_report()
    return json.loads(text) if text else {}


def get_threads() -> Optional[int]:
    """The count set_threads() was given, or None when never called (all cores)."""
    n = _lmpress.get_threads()
    return None if n < 0 else n


def _as_tokens(tokens: TokensLike) -> np.ndarray:
    a = np.asarray(tokens)
    if a.ndim != 1:
        raise InvalidArgument(f"tokens: a 1-D sequence of token ids, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, dtype=np.int32)
    if a.dtype.kind not in "iu":
        raise TypeError(f"tokens: token ids must be integers, got {a.dtype}")
    if int(a.min()) < _INT32.min or int(a.max()) > _INT32.max:
        raise InvalidArgument("tokens: a token id is out of the int32 range")
    return np.ascontiguousarray(a, dtype=np.int32)


def _path(p: PathLike) -> str:
    return os.fsdecode(os.fspath(p))


def _opt_path(p: Optional[PathLike]) -> Optional[str]:
    return None if p is None else _path(p)


def _cache(
    cache_type: Optional[str] = None,
    cache_type_k: Optional[str] = None,
    cache_type_v: Optional[str] = None,
    kv_rotate: Optional[str] = None,
    kv_group: Optional[int] = None,
    kv_residual: Optional[int] = None,
    kv_policy: Optional[str] = None,
) -> dict:
    """The KV-cache options as the command line's --cache-type[-k|-v], --kv-* (None: the default)."""
    return {
        "type_k": cache_type_k if cache_type_k is not None else cache_type,
        "type_v": cache_type_v if cache_type_v is not None else cache_type,
        "rotate": kv_rotate,
        "kivi_group": kv_group,
        "kivi_residual": kv_residual,
        "policy": kv_policy,
    }


def _sampling(
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    seed: int,
    repeat_penalty: float,
    frequency_penalty: float,
    presence_penalty: float,
    penalty_last_n: int,
) -> dict:
    return {
        "temperature": float(temperature),
        "top_k": int(top_k),
        "top_p": float(top_p),
        "min_p": float(min_p),
        "seed": int(seed),
        "repeat_penalty": float(repeat_penalty),
        "frequency_penalty": float(frequency_penalty),
        "presence_penalty": float(presence_penalty),
        "penalty_last_n": int(penalty_last_n),
    }


# ------------------------------------------------------------------ results


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What lmpress_model_get_info reports. bos/eos are None when the vocabulary has none."""

    arch: str
    format: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_ctx_train: int
    n_params: int
    n_bytes: int
    bos: Optional[int]
    eos: Optional[int]
    add_bos: bool


class Token(NamedTuple):
    """One generated token: its id and the text it completes (may be "" mid-character)."""

    id: int
    text: str


@dataclasses.dataclass(frozen=True)
class GenerateResult:
    """A finished generation.

    tokens/text: what was generated (for a Generation: what its iterator handed
    out). n_generated: tokens the library generated (for a Generation, those
    handed out: nothing is generated ahead of the iteration). stop_reason:
    "eos", "length" (max_tokens), "context" (the context is full) or "caller"
    (closed early).
    """

    text: str
    tokens: Tuple[int, ...]
    n_prompt: int
    n_generated: int
    stop_reason: str
    prompt_seconds: float
    gen_seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Generation speed as the library timed it (prompt excluded)."""
        return self.n_generated / self.gen_seconds if self.gen_seconds > 0 else float("nan")


class Generation(Iterator[Token]):
    """A running generation: iterate for Token(id, text) pairs as they come.

    Each step of the iteration computes one token on the calling thread, with
    the GIL released (the first one runs the prompt too); nothing is generated
    ahead of the loop. Leaving the loop early (``break``, then ``close()``,
    ``with``, or dropping the last reference) frees the generation
    (``result.stop_reason == "caller"``). ``tokens``/``text`` collect what the
    iteration handed out; ``result`` is set once the generation ended.
    """

    def __init__(self, handle: Any) -> None:
        self._g = handle
        self._next = handle.next
        self.tokens: list = []
        self._pieces: list = []

    def __iter__(self) -> "Generation":
        return self

    def __next__(self) -> Token:
        tid, text = self._next()
        self.tokens.append(tid)
        self._pieces.append(text)
        return Token(tid, text)

    @property
    def text(self) -> str:
        """The text of the tokens handed out so far, and once it ended the bytes
        the last token left incomplete (which no Token carries)."""
        return "".join(self._pieces) + self._g.tail()

    @property
    def done(self) -> bool:
        """Whether the generation ended (or was closed)."""
        return bool(self._g.done())

    @property
    def result(self) -> Optional[GenerateResult]:
        """The finished generation (None while it runs)."""
        r = self._g.result()
        if r is None:
            return None
        return GenerateResult(text=self.text, tokens=tuple(self.tokens), **r)

    def close(self) -> None:
        """Stops the generation and frees it (a no-op once it ended)."""
        g = getattr(self, "_g", None)
        if g is not None:
            g.close()

    def __enter__(self) -> "Generation":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


# ------------------------------------------------------------------ model


class Model:
    """A loaded model (GGUF file, Hugging Face directory, GPTQ directory or llama2.c checkpoint).

    Load with Model.load(path). close() (or ``with``) frees it once the
    contexts and generations made from it are gone too.
    """

    def __init__(self, handle: Any, path: str) -> None:
        if not isinstance(handle, _lmpress.Model):
            raise TypeError("use Model.load(path)")
        self._m = handle
        self.path = path
        self._info: Optional[ModelInfo] = None

    @classmethod
    def load(
        cls,
        path: PathLike,
        tokenizer_path: Optional[PathLike] = None,
        repack: bool = True,
        progress: Optional[ProgressCallback] = None,
    ) -> "Model":
        """Loads a model.

        tokenizer_path: the tokenizer of a llama2.c checkpoint (None: found beside it).
        repack: weights repacked for the fast kernels (as the command line runs models).
        progress: called as progress(stage, done, total); returning False cancels
        (lmpress.Cancelled); an exception it raises cancels and is raised here.
        """
        p = _path(path)
        return cls(_lmpress.Model.load(p, _opt_path(tokenizer_path), bool(repack), progress), p)

    # -- lifetime
    def close(self) -> None:
        self._m.close()

    @property
    def closed(self) -> bool:
        return bool(self._m.closed)

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<lmpress.Model {self.path!r} (closed)>"
        i = self.info
        return f"<lmpress.Model {self.path!r} {i.arch} {i.format} {i.n_params} params>"

    # -- facts
    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            d = self._m.info()
            d["bos"] = None if d["bos"] < 0 else d["bos"]
            d["eos"] = None if d["eos"] < 0 else d["eos"]
            self._info = ModelInfo(**d)
        return self._info

    @property
    def n_vocab(self) -> int:
        return int(self._m.n_vocab)

    # -- tokenizer
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list:
        """Token ids of text (list[int]). add_special: BOS/EOS as the model adds them;
        parse_special: "<|...|>" texts of special tokens become those tokens."""
        return self._m.tokenize(text, bool(add_special), bool(parse_special))

    def detokenize_bytes(self, tokens: TokensLike, special: bool = False) -> bytes:
        """The bytes of tokens' text (a token may hold part of a UTF-8 character)."""
        return self._m.detokenize(_as_tokens(tokens), bool(special))

    def detokenize(self, tokens: TokensLike, special: bool = False) -> str:
        """The text of tokens; bytes that are not valid UTF-8 become U+FFFD.
        special: render special tokens' texts (as "<s>")."""
        return self.detokenize_bytes(tokens, special).decode("utf-8", errors="replace")

    # -- evaluation
    def context(
        self,
        n_ctx: int = 0,
        n_batch: int = 512,
        *,
        cache_type: Optional[str] = None,
        cache_type_k: Optional[str] = None,
        cache_type_v: Optional[str] = None,
        kv_rotate: Optional[str] = None,
        kv_group: Optional[int] = None,
        kv_residual: Optional[int] = None,
        kv_policy: Optional[str] = None,
    ) -> "Context":
        """A fresh sequence: n_ctx positions (0: the model's trained context).

        Cache options as the command line's: cache_type (both K and V) or
        cache_type_k/cache_type_v (f32, f16, bf16, q8_0, q4_0, ..., kivi4, kivi2;
        default f16), kv_rotate ("auto", "on", "off"), kv_group, kv_residual,
        kv_policy ("none", "sink-window:S,W", "h2o:B[,W]", "snapkv:B,W").
        """
        cache = _cache(cache_type, cache_type_k, cache_type_v, kv_rotate, kv_group, kv_residual, kv_policy)
        return Context(_lmpress.Context(self._m, int(n_ctx), int(n_batch), cache), self)

    def logits(self, tokens: TokensLike, all_logits: bool = True, n_ctx: Optional[int] = None, **cache: Any) -> np.ndarray:
        """Logits of tokens evaluated from position 0 on a fresh context:
        float32 (len(tokens), n_vocab), or (1, n_vocab) for the last token only.
        n_ctx: the context's size (None: len(tokens)); cache: as context()'s."""
        t = _as_tokens(tokens)
        with self.context(n_ctx=len(t) if n_ctx is None else n_ctx, **cache) as ctx:
            return ctx.eval(t, all_logits=all_logits)

    # -- generation
    def generate(
        self,
        prompt: str,
        max_tokens: int = 64,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        seed: int = 0,
        ignore_eos: bool = False,
        *,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        penalty_last_n: int = 64,
        n_ctx: int = 0,
        cache_type: Optional[str] = None,
        cache_type_k: Optional[str] = None,
        cache_type_v: Optional[str] = None,
        kv_rotate: Optional[str] = None,
        kv_group: Optional[int] = None,
        kv_residual: Optional[int] = None,
        kv_policy: Optional[str] = None,
    ) -> Generation:
        """Generates from prompt (BOS added as the model adds it), as `lmpress generate`:
        the same options give the same tokens. Returns a Generation, an iterator of
        Token(id, text) pairs; see its doc for stopping early.

        temperature <= 0: greedy (the default); top_k <= 0, top_p >= 1, min_p <= 0: off.
        Penalties (repeat 1, frequency 0, presence 0: off) look back penalty_last_n
        tokens (-1: all). n_ctx: 0 for the model's trained context. Cache options as
        context()'s.
        """
        sampling = _sampling(temperature, top_k, top_p, min_p, seed, repeat_penalty, frequency_penalty,
                             presence_penalty, penalty_last_n)
        cache = _cache(cache_type, cache_type_k, cache_type_v, kv_rotate, kv_group, kv_residual, kv_policy)
        h = _lmpress.Generation(self._m, prompt, int(max_tokens), int(n_ctx), bool(ignore_eos), sampling, cache)
        return Generation(h)

    def complete(
        self,
        prompt: str,
        max_tokens: int = 64,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        seed: int = 0,
        ignore_eos: bool = False,
        *,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        penalty_last_n: int = 64,
        n_ctx: int = 0,
        cache_type: Optional[str] = None,
        cache_type_k: Optional[str] = None,
        cache_type_v: Optional[str] = None,
        kv_rotate: Optional[str] = None,
        kv_group: Optional[int] = None,
        kv_residual: Optional[int] = None,
        kv_policy: Optional[str] = None,
    ) -> GenerateResult:
        """A whole generation in one call (GIL released throughout; Ctrl-C stops it):
        the generated token ids, their text and the library's counts and timings.
        Options as generate()'s."""
        sampling = _sampling(temperature, top_k, top_p, min_p, seed, repeat_penalty, frequency_penalty,
                             presence_penalty, penalty_last_n)
        cache = _cache(cache_type, cache_type_k, cache_type_v, kv_rotate, kv_group, kv_residual, kv_policy)
        r = _lmpress.generate(self._m, prompt, int(max_tokens), int(n_ctx), bool(ignore_eos), sampling, cache, True)
        r["tokens"] = tuple(r["tokens"])
        return GenerateResult(**r)

    def generate_text(self, prompt: str, max_tokens: int = 64, **kwargs: Any) -> str:
        """The generated text (options as generate()'s)."""
        return self.complete(prompt, max_tokens, **kwargs).text

    def generate_tokens(self, prompt: str, max_tokens: int = 64, **kwargs: Any) -> list:
        """The generated token ids (options as generate()'s)."""
        return list(self.complete(prompt, max_tokens, **kwargs).tokens)


# ---------------------------------------------------------------- context


class Context:
    """One sequence over a model (make with Model.context()): evaluate tokens at the
    next positions, read their logits, truncate to go back."""

    def __init__(self, handle: Any, model: Model) -> None:
        self._c = handle
        self.model = model

    def eval(self, tokens: TokensLike, all_logits: bool = False) -> np.ndarray:
        """Runs tokens at the next positions; returns their logits as float32
        (len(tokens), n_vocab) with all_logits, else (1, n_vocab) for the last one."""
        return self._c.eval(_as_tokens(tokens), bool(all_logits))

    @property
    def logits(self) -> Optional[np.ndarray]:
        """A copy of the last eval's logits (None before any)."""
        return self._c.logits()

    @property
    def n_past(self) -> int:
        """Positions evaluated so far."""
        return int(self._c.n_past())

    def truncate(self, n: int) -> None:
        """Forgets every position after the first n (0: a fresh sequence)."""
        self._c.truncate(int(n))

    def close(self) -> None:
        self._c.close()

    @property
    def closed(self) -> bool:
        return bool(self._c.closed)

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------- sampler


class Sampler:
    """Draws tokens from logits as generation does (the command line's defaults:
    greedy; top_k 40, top_p 0.95, min_p 0.05 once a temperature is set). Seeded:
    the same seed and calls give the same tokens."""

    def __init__(
        self,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        seed: int = 0,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        penalty_last_n: int = 64,
    ) -> None:
        self.params = _sampling(temperature, top_k, top_p, min_p, seed, repeat_penalty, frequency_penalty,
                                presence_penalty, penalty_last_n)
        self._s = _lmpress.Sampler(self.params)

    def sample(self, logits: np.ndarray, history: Optional[TokensLike] = None) -> int:
        """A token drawn from one row of logits (n_vocab,), or the last row of a 2-D
        array, after the penalties over history (the sequence so far)."""
        a = np.asarray(logits, dtype=np.float32)
        if a.ndim == 2:
            a = a[-1]
        if a.ndim != 1:
            raise InvalidArgument(f"logits: (n_vocab,) or (rows, n_vocab), got shape {np.shape(logits)}")
        h = None if history is None else _as_tokens(history)
        return int(self._s.sample(np.ascontiguousarray(a), h))

    def __repr__(self) -> str:
        return f"lmpress.Sampler({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


# ---------------------------------------------------------- evaluation, tools


def perplexity(
    model: Model,
    text: str,
    n_ctx: int = 512,
    n_chunks: int = -1,
    protocol: str = "llama.cpp",
    progress: Optional[ProgressCallback] = None,
    **cache: Any,
) -> dict:
    """Perplexity of model on text, as `lmpress perplexity` (llama.cpp's protocol:
    windows of n_ctx with BOS, second half scored; "gptq": lines joined with blank
    lines, every token scored). n_chunks: windows scored (-1: all). cache: as
    Model.context()'s. Returns {ppl, ppl_stderr, mean_nll, n_tokens_scored, n_chunks}."""
    return _lmpress.perplexity(model._m, text, int(n_ctx), int(n_chunks), protocol, _cache(**cache), progress)


def kld(
    base: Model,
    cand: Model,
    text: str,
    n_ctx: int = 512,
    n_chunks: int = -1,
    cache_type: Optional[str] = None,
    base_cache_type: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
    *,
    cache_type_k: Optional[str] = None,
    cache_type_v: Optional[str] = None,
    base_cache_type_k: Optional[str] = None,
    base_cache_type_v: Optional[str] = None,
    kv_rotate: Optional[str] = None,
    kv_group: Optional[int] = None,
    kv_residual: Optional[int] = None,
    kv_policy: Optional[str] = None,
) -> dict:
    """KL divergence of cand's next-token distributions from base's on text, as
    `lmpress kld BASE CAND` (llama.cpp's --kl-divergence protocol: windows of n_ctx
    with BOS, second half scored; text tokenized with base's tokenizer).

    base and cand are loaded Models, and may be the same one with other caches:
    cache_type[_k|_v] is cand's KV cache, base_cache_type[_k|_v] base's (default f16
    both); kv_rotate, kv_group and kv_residual apply to both (as on the command
    line), kv_policy to cand's. n_chunks: windows scored (-1: all). Returns
    {kld, kld_unc, ppl, ppl_base, same_top, rms_p_diff, n_tokens, n_chunks}: mean
    KLD and its uncertainty, cand's and base's perplexities, the fraction of tokens
    both rank first the same, the RMS change of the right token's probability,
    tokens scored and windows.
    """
    for name, m in (("base", base), ("cand", cand)):
        if not isinstance(m, Model):
            raise TypeError(f"kld: {name} must be an lmpress.Model (load it with Model.load), got {type(m).__name__}")
    n_chunks = int(n_chunks)
    if n_chunks == 0 or n_chunks < -1:
        raise InvalidArgument(f"kld: n_chunks {n_chunks}: -1 (all) or >= 1")
    cache = _cache(cache_type, cache_type_k, cache_type_v, kv_rotate, kv_group, kv_residual, kv_policy)
    base_cache = _cache(base_cache_type, base_cache_type_k, base_cache_type_v, kv_rotate, kv_group, kv_residual)
    return _lmpress.kld(base._m, cand._m, text, int(n_ctx), n_chunks, cache, base_cache, progress)


def _disk_bytes(path: str) -> int:
    """Bytes on disk as `lmpress compare` counts them: a file, or every regular file in a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    if os.path.isdir(path):
        with os.scandir(path) as it:
            for e in it:
                if e.is_file():
                    total += e.stat().st_size
    if total == 0:
        raise Error(f"{path}: no model file there")
    return total


def compare(
    models: Sequence[Union[PathLike, Model]],
    text: str,
    n_ctx: int = 512,
    n_chunks: int = -1,
    labels: Optional[Sequence[str]] = None,
) -> list:
    """Compares files of one model, as `lmpress compare M1 M2 ... --json` (without its
    tasks, speed and cost columns): one dict per model, the first being the base.

    models: paths (loaded here, one candidate at a time, and closed) or loaded
    Models (left open). Every row has label (labels[i], default the file name),
    path, size_bytes (the file, or every file of a directory), n_params,
    bits_per_weight (8 * size_bytes / n_params), compression (the first's size /
    this size) and ppl; the base's row also ppl_stderr (lmpress.perplexity on
    text), the others' (lmpress.kld against the base) ppl_diff (ppl - the base's),
    kld, kld_unc and same_top.
    """
    models = list(models)
    if not models:
        raise InvalidArgument("compare: no models")
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(models):
            raise InvalidArgument(f"compare: {len(labels)} labels for {len(models)} models")
    n_ctx, n_chunks = int(n_ctx), int(n_chunks)
    if n_chunks == 0 or n_chunks < -1:
        raise InvalidArgument(f"compare: n_chunks {n_chunks}: -1 (all) or >= 1")

    def open_model(m: Union[PathLike, Model]) -> Tuple[Model, bool]:
        if isinstance(m, Model):
            return m, False
        return Model.load(m), True

    rows: list = []
    base, own_base = open_model(models[0])
    try:
        for i, spec in enumerate(models):
            m, own = (base, False) if i == 0 else open_model(spec)
            try:
                path = m.path if isinstance(spec, Model) else _path(spec)
                size = _disk_bytes(path)
                n_params = int(m.info.n_params)
                row = {
                    "label": labels[i] if labels is not None else os.path.basename(path),
                    "path": path,
                    "size_bytes": size,
                    "n_params": n_params,
                    "bits_per_weight": 8.0 * size / n_params if n_params > 0 else 0.0,
                    "compression": float(rows[0]["size_bytes"]) / size if rows else 1.0,
                }
                if i == 0:
                    r = perplexity(m, text, n_ctx=n_ctx, n_chunks=n_chunks)
                    row["ppl"] = r["ppl"]
                    row["ppl_stderr"] = r["ppl_stderr"]
                else:
                    r = kld(base, m, text, n_ctx=n_ctx, n_chunks=n_chunks)
                    row["ppl"] = r["ppl"]
                    row["ppl_diff"] = r["ppl"] - r["ppl_base"]
                    row["kld"] = r["kld"]
                    row["kld_unc"] = r["kld_unc"]
                    row["same_top"] = r["same_top"]
                rows.append(row)
            finally:
                if own:
                    m.close()
    finally:
        if own_base:
            base.close()
    return rows


def quantize(
    model_path: PathLike,
    out_path: PathLike,
    type: Optional[str] = None,
    method: str = "rtn",
    calib: Optional[PathLike] = None,
    calib_samples: int = 128,
    calib_ctx: int = 2048,
    imatrix: Optional[PathLike] = None,
    damp: float = 0.01,
    act_order: bool = False,
    rotate: Optional[str] = None,
    scheme: Optional[str] = None,
    smooth: Optional[float] = None,
    compensate: Optional[str] = None,
    compensate_out: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    *,
    tensor_types: Optional[Sequence[str]] = None,
    targets: Optional[Sequence[str]] = None,
    ignore: Optional[Sequence[str]] = None,
    format: Optional[str] = None,
    pure: bool = False,
    keep_output: bool = False,
    target_bpw: Optional[float] = None,
    name: Optional[str] = None,
) -> str:
    """Quantizes the model at model_path into out_path, as `lmpress quantize`.

    type: a GGUF file type (q4_k_m, the default, q8_0, ...) or an int-N group format (int4-g128:
    out_path is then a GPTQ directory). method: "rtn", "gptq" or "awq" (the last
    two need calib, a calibration text, of calib_samples windows of calib_ctx
    tokens). imatrix: a llama.cpp imatrix GGUF. rotate: "hadamard" or
    "hadamard:SEED" rotates the residual stream (and each head's values) first
    (QuaRot/SpinQuant R1+R2; the same function, fewer outliers); with ",r4" also
    down_proj's input at run time (a GGUF only lmpress runs). scheme="w8a8":
    int8 weights per channel and int8 activations per token, a compressed-tensors
    int-quantized directory (type is then int8-ch or None); scheme="w4a8": the same
    with symmetric int4 weights (type None: int4-ch, or int4-gN); smooth:
    SmoothQuant's alpha first (w8a8/w4a8, needs calib). compensate="rank=R[,method=eora|svd]": EoRA's
    low-rank compensation of the rounding error as a LoRA adapter (needs calib),
    written to compensate_out (None: OUT.eora.gguf, or OUT-eora beside a
    checkpoint directory). tensor_types: ["PATTERN=TYPE", ...] as --tensor-type (with an
    int-N type: an int-N type or f16 per linear); targets / ignore: for int-N types, the
    modules quantized / left out (Hugging Face names, or "re:REGEX"), as --targets /
    --ignore. format: an int-N checkpoint's layout, "gptq" (None), "awq" or
    "compressed-tensors"; pure: every quantizable tensor gets type (no mix); keep_output:
    output.weight keeps its type; target_bpw: each tensor's GGUF type chosen by measured
    sensitivity on calib so that the file has at most this many bits per weight (type None);
    name: general.name to record. The output is written under a temporary name and renamed at
    the end; lmpress.last_report() then gives the report. Returns out_path.
    """
    out = _path(out_path)
    if type is None:
        type = "" if scheme or target_bpw is not None else "q4_k_m"
    _lmpress.quantize(_path(model_path), out, type, method, _opt_path(calib), int(calib_samples), int(calib_ctx),
                      _opt_path(imatrix), float(damp), bool(act_order), rotate, scheme,
                      -1.0 if smooth is None else float(smooth), compensate, _opt_path(compensate_out), progress,
                      _str_list(tensor_types, "tensor_types"), _str_list(targets, "targets"),
                      _str_list(ignore, "ignore"), format, bool(pure), bool(keep_output),
                      0.0 if target_bpw is None else float(target_bpw), name)
    return out


def _str_list(v: Optional[Sequence[str]], what: str) -> List[str]:
    """A list of str from None, one str, or a sequence of str."""
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    out = list(v)
    for s in out:
        if not isinstance(s, str):
            raise TypeError(f"{what} must hold str, got {type(s).__name__}")
    return out


PRUNE_METHODS = ("magnitude", "wanda", "sparsegpt")


def _check_nm(nm: str) -> None:
    n, sep, m = nm.partition(":")
    ok = sep == ":" and n.isdigit() and m.isdigit() and n.isascii() and m.isascii()
    if not ok or not (0 < int(n) < int(m) <= 64):
        raise InvalidArgument(f"prune: nm {nm!r}: N:M with 0 < N < M <= 64 (2:4, 4:8, ...)")


def prune(
    model_path: PathLike,
    out_path: PathLike,
    method: str = "magnitude",
    sparsity: Optional[float] = None,
    nm: Optional[str] = None,
    quantize: Optional[str] = None,
    calib: Optional[PathLike] = None,
    calib_samples: int = 128,
    calib_ctx: int = 2048,
    damp: float = 0.01,
    rotate: Optional[str] = None,
    compensate: Optional[str] = None,
    compensate_out: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    *,
    structured: Optional[str] = None,
    targets: Optional[Sequence[str]] = None,
    ignore: Optional[Sequence[str]] = None,
) -> str:
    """Prunes the blocks' linear layers of the (float) model at model_path into the
    GGUF file out_path, as `lmpress prune`.

    method: "magnitude", "wanda" or "sparsegpt" (the last two need calib, a
    calibration text, of calib_samples windows of calib_ctx tokens). Exactly one
    of sparsity (the fraction of each linear's weights zeroed, 0 <= s < 1) and nm
    ("2:4", "4:8": N nonzero weights in every M of a row). quantize: also quantize
    the pruned linears (q4_0, q5_0, q8_0, q3_k, q6_k; SparseGPT does both in one
    pass). damp: SparseGPT's dampening fraction, in (0, 1]. rotate, compensate,
    compensate_out: as quantize's (compensate: wanda or sparsegpt, the pruning
    error's adapter). structured: "heads=F,ffn=F,layers=N[,global][,bias]" removes whole
    KV-head groups, MLP channels and blocks instead (as --structured; needs calib; no
    sparsity or nm). targets / ignore: the modules whose linears are pruned / left dense
    (Hugging Face names, or "re:REGEX"), as --targets / --ignore. Returns out_path.
    """
    if method not in PRUNE_METHODS:
        raise InvalidArgument(f"prune: method {method!r}: magnitude, wanda or sparsegpt")
    if structured is not None:
        if sparsity is not None or nm is not None or method != "magnitude":
            raise InvalidArgument("prune: structured removes whole heads, channels and blocks: no method, sparsity or nm")
        out = _path(out_path)
        _lmpress.prune(_path(model_path), out, None, -1.0, None, quantize, _opt_path(calib), int(calib_samples),
                       int(calib_ctx), float(damp), rotate, compensate, _opt_path(compensate_out), progress,
                       structured, _str_list(targets, "targets"), _str_list(ignore, "ignore"))
        return out
    if (sparsity is None) == (nm is None):
        raise InvalidArgument("prune: give sparsity or nm" + ("" if sparsity is None else ", not both"))
    if sparsity is not None:
        sparsity = float(sparsity)
        if not 0.0 <= sparsity < 1.0:
            raise InvalidArgument(f"prune: sparsity {sparsity}: a fraction, 0 <= sparsity < 1")
    else:
        if not isinstance(nm, str):
            raise TypeError(f"prune: nm must be a str such as '2:4', got {type(nm).__name__}")
        _check_nm(nm)
    if method != "magnitude" and calib is None:
        raise InvalidArgument(f"prune: method {method!r} needs calibration text: calib=PATH")
    damp = float(damp)
    if not 0.0 < damp <= 1.0:
        raise InvalidArgument(f"prune: damp {damp}: a fraction in (0, 1]")
    out = _path(out_path)
    _lmpress.prune(_path(model_path), out, method, -1.0 if sparsity is None else sparsity, nm, quantize,
                   _opt_path(calib), int(calib_samples), int(calib_ctx), damp, rotate, compensate,
                   _opt_path(compensate_out), progress, None, _str_list(targets, "targets"),
                   _str_list(ignore, "ignore"))
    return out


def lowrank(
    model_path: PathLike,
    out_path: PathLike,
    method: str = "svd-llm",
    ratio: Optional[float] = None,
    rank: Optional[int] = None,
    global_budget: bool = False,
    alpha: float = 0.5,
    factor_type: str = "f16",
    calib: Optional[PathLike] = None,
    calib_samples: int = 128,
    calib_ctx: int = 2048,
    targets: Optional[Sequence[str]] = None,
    ignore: Optional[Sequence[str]] = None,
    name: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
) -> str:
    """Factorizes each block linear of the (float) model at model_path as two low-rank factors
    into the GGUF file out_path, as `lmpress lowrank` (an lmpress file: llama.cpp has no
    factorized linears).

    method: "svd", "asvd" or "svd-llm" (the last two need calib, a calibration text). Exactly
    one of ratio (each linear's parameter reduction in (0, 1); with global_budget the linears'
    together, each rank by its spectrum) and rank (one rank for every linear). alpha: ASVD's
    exponent. factor_type: both factors' type (f32, f16, bf16, q8_0, ...). targets / ignore:
    the modules factorized / left dense, as --targets / --ignore. lmpress.last_report() then
    gives each linear's rank and error. Returns out_path.
    """
    out = _path(out_path)
    _lmpress.lowrank(_path(model_path), out, method, -1.0 if ratio is None else float(ratio),
                     -1 if rank is None else int(rank), bool(global_budget), float(alpha), factor_type,
                     _opt_path(calib), int(calib_samples), int(calib_ctx), _str_list(targets, "targets"),
                     _str_list(ignore, "ignore"), name, progress)
    return out


def convert(
    model_path: PathLike,
    out_path: PathLike,
    dtype: Optional[str] = None,
    format: Optional[str] = None,
) -> str:
    """Writes the model at model_path as a GGUF file or a Hugging Face directory, as
    `lmpress convert`. dtype: the weight matrices' type, f32, f16, bf16 or (GGUF,
    round-to-nearest) q8_0, q4_0, q4_1, q5_0, q5_1 (None: keep each tensor's).
    format: "gguf" or "hf" (None: gguf when out_path ends in .gguf, else hf).
    Returns out_path.
    """
    out = _path(out_path)
    _lmpress.convert(_path(model_path), out, None if dtype is None else str(dtype).lower(), format)
    return out


Message = Union[Mapping[str, str], Tuple[str, str]]


def chat_template(
    messages: Iterable[Message],
    model: Optional[Model] = None,
    template: Optional[str] = None,
    add_generation_prompt: bool = True,
) -> str:
    """Renders messages ({"role": ..., "content": ...} or (role, content)) with a
    chat template: template is a built-in name (chatml, llama2, llama3, mistral,
    phi3, gemma, zephyr) or a template file; None for the model's own."""
    pairs = []
    for i, m in enumerate(messages):
        if isinstance(m, Mapping):
            try:
                pairs.append((str(m["role"]), str(m["content"])))
            except KeyError as e:
                raise InvalidArgument(f"messages[{i}] has no {e.args[0]!r}") from None
        else:
            role, content = m
            pairs.append((str(role), str(content)))
    out = _lmpress.chat_template(pairs, None if model is None else model._m, template, bool(add_generation_prompt))
    return out.decode("utf-8", errors="replace")
