"""Type stubs of lmpress._lmpress, the bindings of liblmpress's C API (use the lmpress package)."""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

_Progress = Optional[Callable[[str, int, int], Optional[bool]]]
_Tokens = npt.ArrayLike
# Keys: type_k, type_v, rotate, policy (str or None), kivi_group, kivi_residual (int or None).
_CacheDict = Optional[Dict[str, Any]]
# Keys: temperature, top_k, top_p, min_p, seed, repeat_penalty, frequency_penalty,
# presence_penalty, penalty_last_n.
_SamplingDict = Optional[Dict[str, Any]]

API_VERSION: int

def version() -> str: ...
def api_version() -> int: ...
def last_report() -> str: ...
def set_threads(n: int) -> None: ...
def get_threads() -> int: ...
def defaults() -> Dict[str, Dict[str, Any]]: ...

class Model:
    @staticmethod
    def load(path: str, tokenizer_path: Optional[str] = None, repack: bool = True, progress: _Progress = None) -> Model: ...
    def info(self) -> Dict[str, Any]: ...
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> List[int]: ...
    def detokenize(self, tokens: _Tokens, special: bool = False) -> bytes: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def n_vocab(self) -> int: ...

class Context:
    def __init__(self, model: Model, n_ctx: int = 0, n_batch: int = 0, cache: _CacheDict = None) -> None: ...
    def eval(self, tokens: _Tokens, all_logits: bool = False) -> npt.NDArray[np.float32]: ...
    def logits(self) -> Optional[npt.NDArray[np.float32]]: ...
    def n_past(self) -> int: ...
    def truncate(self, n: int) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...

class Sampler:
    def __init__(self, params: _SamplingDict = None) -> None: ...
    def sample(self, logits: npt.ArrayLike, history: Optional[_Tokens] = None) -> int: ...

class Generation:
    def __init__(
        self,
        model: Model,
        prompt: str,
        n_predict: int,
        n_ctx: int = 0,
        ignore_eos: bool = False,
        sampling: _SamplingDict = None,
        cache: _CacheDict = None,
    ) -> None: ...
    def next(self) -> Tuple[int, str]: ...
    def close(self) -> None: ...
    def tail(self) -> str: ...
    # Keys: n_prompt, n_generated, stop_reason, prompt_seconds, gen_seconds.
    def result(self) -> Optional[Dict[str, Any]]: ...
    def done(self) -> bool: ...

# The result keys of Generation.result() plus tokens (list[int]) and text (str).
def generate(
    model: Model,
    prompt: str,
    n_predict: int,
    n_ctx: int = 0,
    ignore_eos: bool = False,
    sampling: _SamplingDict = None,
    cache: _CacheDict = None,
    collect: bool = True,
) -> Dict[str, Any]: ...
def perplexity(
    model: Model,
    text: str,
    n_ctx: int,
    n_chunks: int,
    protocol: Optional[str] = None,
    cache: _CacheDict = None,
    progress: _Progress = None,
) -> Dict[str, Any]: ...
def quantize(
    in_path: str,
    out_path: str,
    type: str,
    method: Optional[str],
    calib: Optional[str],
    calib_samples: int,
    calib_ctx: int,
    imatrix: Optional[str],
    damp: float,
    act_order: bool,
    rotate: Optional[str],
    scheme: Optional[str],
    smooth: float,  # < 0: none
    compensate: Optional[str],
    compensate_out: Optional[str],
    progress: _Progress,
    tensor_types: List[str] = ...,
    targets: List[str] = ...,
    ignore: List[str] = ...,
    format: Optional[str] = ...,
    pure: bool = ...,
    keep_output: bool = ...,
    target_bpw: float = ...,
    name: Optional[str] = ...,
) -> None: ...
def lowrank(
    in_path: str,
    out_path: str,
    method: str,
    ratio: float,  # < 0: not given
    rank: int,  # < 0: not given
    global_budget: bool,
    alpha: float,
    factor_type: str,
    calib: Optional[str],
    calib_samples: int,
    calib_ctx: int,
    targets: List[str],
    ignore: List[str],
    name: Optional[str],
    progress: _Progress,
) -> None: ...
def prune(
    in_path: str,
    out_path: str,
    method: Optional[str],
    sparsity: float,  # < 0: none (nm given)
    nm: Optional[str],
    quantize: Optional[str],
    calib: Optional[str],
    calib_samples: int,
    calib_ctx: int,
    damp: float,
    rotate: Optional[str],
    compensate: Optional[str],
    compensate_out: Optional[str],
    progress: _Progress,
    structured: Optional[str] = None,
    targets: List[str] = ...,
    ignore: List[str] = ...,
) -> None: ...
def convert(in_path: str, out_path: str, dtype: Optional[str] = None, format: Optional[str] = None) -> None: ...

# Keys: kld, kld_unc, ppl, ppl_base, same_top, rms_p_diff, n_tokens, n_chunks.
def kld(
    base: Model,
    cand: Model,
    text: str,
    n_ctx: int,
    n_chunks: int,
    cache: _CacheDict = None,
    base_cache: _CacheDict = None,
    progress: _Progress = None,
) -> Dict[str, Any]: ...
def chat_template(
    messages: Sequence[Tuple[str, str]],
    model: Optional[Model] = None,
    template_name: Optional[str] = None,
    add_generation_prompt: bool = True,
) -> bytes: ...
