"""Tests of the lmpress Python package against the command line and reference values.

Environment: LMPRESS_TEST_MODEL (default /work/shared/models/lmp-8m), LMPRESS_CLI
(default ../build/lmpress relative to python/), LMPRESS_TEST_THREADS (compute
threads for both, default 1: the test machines are small and shared, and
OpenMP teams larger than the free cores crawl), LMPRESS_TEST_TEXT (the
perplexity text; default WikiText-2's test set under /work/shared/data).
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lmpress

PYTHON_DIR = Path(__file__).resolve().parents[1]
CHECKOUT = PYTHON_DIR.parent
SHARED = Path(os.environ.get("LMPRESS_SHARED", "/work/shared"))
MODEL = Path(os.environ.get("LMPRESS_TEST_MODEL", SHARED / "models" / "lmp-8m"))
CLI = Path(os.environ.get("LMPRESS_CLI", PYTHON_DIR.parent / "build" / "lmpress"))
THREADS = int(os.environ.get("LMPRESS_TEST_THREADS", "1"))
PROMPT = "Once upon a time"

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason=f"no test model at {MODEL}")


def cli(*args: str) -> dict:
    if not CLI.exists():
        pytest.skip(f"no lmpress command line at {CLI} (set LMPRESS_CLI)")
    r = subprocess.run([str(CLI), *args, "-t", str(THREADS), "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{CLI} {' '.join(args)} failed: {r.stderr}"
    return json.loads(r.stdout)


def cli_generate(model: Path, prompt: str, n: int, *extra: str) -> dict:
    return cli("generate", str(model), "-p", prompt, "-n", str(n), *extra)


@pytest.fixture(scope="session", autouse=True)
def threads():
    lmpress.set_threads(THREADS)
    yield


@pytest.fixture(scope="session")
def model() -> lmpress.Model:
    return lmpress.Model.load(MODEL)


@pytest.fixture(scope="session")
def reference() -> dict:
    path = MODEL / "reference.json"
    if not path.exists():
        pytest.skip("the test model has no reference.json")
    return json.loads(path.read_text())["reference"]


@pytest.fixture(scope="session")
def text_file(tmp_path_factory, model) -> Path:
    """About 30 kB of WikiText-2 (thousands of tokens), else of this checkout's README."""
    src = Path(os.environ.get("LMPRESS_TEST_TEXT", SHARED / "data" / "wikitext-2" / "wiki.test.raw"))
    if not src.exists():
        src = CHECKOUT / "README.md"
    text = src.read_bytes()[:30000].decode("utf-8", errors="ignore")
    assert len(model.tokenize(text)) >= 1000
    out = tmp_path_factory.mktemp("ppl") / "text.txt"
    out.write_text(text, encoding="utf-8")
    return out


# ------------------------------------------------------------------ basics


def test_version_and_api():
    header = (CHECKOUT / "include" / "lmpress.h").read_text() if (CHECKOUT / "include" / "lmpress.h").exists() else ""
    assert lmpress.__version__ == lmpress.library_version()
    assert lmpress.__version__.count(".") == 2
    if header:
        assert f'#define LMPRESS_VERSION "{lmpress.__version__}"' in header
    assert lmpress.API_VERSION == lmpress._lmpress.api_version()


def test_error_classes():
    assert issubclass(lmpress.Error, RuntimeError)
    assert issubclass(lmpress.InvalidArgument, lmpress.Error) and issubclass(lmpress.InvalidArgument, ValueError)
    assert issubclass(lmpress.Cancelled, lmpress.Error)
    assert issubclass(lmpress.OutOfMemory, MemoryError)


def test_python_defaults_are_the_c_apis():
    d = lmpress._lmpress.defaults()
    sig = inspect.signature(lmpress.Model.generate).parameters
    for name, value in d["sampling"].items():
        assert sig[name].default == pytest.approx(value, rel=1e-6), name
        assert inspect.signature(lmpress.Sampler).parameters[name].default == pytest.approx(value, rel=1e-6), name
    assert sig["max_tokens"].default == d["generate"]["n_predict"]
    assert sig["n_ctx"].default == d["generate"]["n_ctx"]
    assert sig["ignore_eos"].default == d["generate"]["ignore_eos"]
    assert inspect.signature(lmpress.Model.context).parameters["n_batch"].default == d["context"]["n_batch"]
    ppl = inspect.signature(lmpress.perplexity).parameters
    assert ppl["n_ctx"].default == d["perplexity"]["n_ctx"]
    assert ppl["n_chunks"].default == d["perplexity"]["n_chunks"]
    q = inspect.signature(lmpress.quantize).parameters
    for name in ("calib_samples", "calib_ctx", "damp", "act_order"):
        assert q[name].default == d["quantize"][name], name
    assert inspect.signature(lmpress.Model.load).parameters["repack"].default == d["model"]["repack"]
    pr = inspect.signature(lmpress.prune).parameters
    for name in ("calib_samples", "calib_ctx", "damp"):
        assert pr[name].default == d["prune"][name], name
    assert pr["sparsity"].default is None and d["prune"]["sparsity"] < 0  # none: nm or sparsity must be given
    kl = inspect.signature(lmpress.kld).parameters
    assert kl["n_ctx"].default == d["kld"]["n_ctx"] and kl["n_chunks"].default == d["kld"]["n_chunks"]
    assert d["kld"]["cache"] == d["kld"]["base_cache"] == d["cache"]
    cmp = inspect.signature(lmpress.compare).parameters
    assert cmp["n_ctx"].default == d["perplexity"]["n_ctx"] and cmp["n_chunks"].default == d["perplexity"]["n_chunks"]


def test_set_threads():
    with pytest.raises(lmpress.InvalidArgument):
        lmpress.set_threads(-1)
    assert lmpress.get_threads() == THREADS


def test_info(model):
    i = model.info
    assert (i.arch, i.format) == ("llama", "hf")
    assert (i.n_vocab, i.n_embd, i.n_layer, i.n_head, i.n_head_kv, i.head_dim, i.n_ff) == (4096, 288, 6, 6, 2, 48, 768)
    assert i.n_ctx_train == 256
    assert i.n_params == 7_671_456
    assert (i.bos, i.eos, i.add_bos) == (1, 2, True)
    assert model.n_vocab == 4096
    assert "lmp-8m" in repr(model)


# --------------------------------------------------------------- tokenizer


def test_tokenize_reference(model, reference):
    assert model.tokenize(reference["prompt"]) == reference["token_ids"]
    assert model.tokenize(reference["prompt"], add_special=False) == reference["token_ids"][1:]


@pytest.mark.parametrize("text", ["Hello world", "a\n\nb  c\tend", "naïve café — 東京 🙂", "x" * 300])
def test_tokenize_detokenize_round_trip(model, text):
    ids = model.tokenize(text)
    assert ids[0] == model.info.bos and all(isinstance(t, int) for t in ids)
    # The tokenizer adds SentencePiece's dummy-prefix space, which detokenize
    # (a concatenation of the tokens' pieces, as llama.cpp's) keeps.
    assert model.detokenize(ids) == " " + text
    assert model.detokenize(np.array(ids, dtype=np.int64)) == " " + text
    assert model.detokenize(ids, special=True) == "<s> " + text
    # ... and the text without it gives the ids back.
    assert model.tokenize(model.detokenize(ids)[1:]) == ids


def test_detokenize_partial_utf8_is_replaced(model):
    ids = model.tokenize("東", add_special=False)  # byte fallback: ▁, E6, 9D, B1
    pieces = [model.detokenize_bytes([t]) for t in ids]
    assert b"".join(pieces) == " 東".encode()
    assert model.detokenize([ids[1]]) == "\ufffd"
    assert model.detokenize(ids[:2]) == " \ufffd"
    assert model.detokenize(ids) == " 東"


def test_parse_special(model):
    assert model.tokenize("<s>x", add_special=False, parse_special=True)[0] == 1
    assert 1 not in model.tokenize("<s>x", add_special=False, parse_special=False)


def test_detokenize_bad_ids(model):
    with pytest.raises(lmpress.InvalidArgument, match="4096"):
        model.detokenize([5, 4096])
    with pytest.raises(TypeError):
        model.detokenize([1.5, 2.0])


# ----------------------------------------------------------------- logits


def test_logits_match_reference(model, reference):
    ids = reference["token_ids"]
    logits = model.logits(ids)
    assert logits.dtype == np.float32 and logits.shape == (len(ids), 4096)
    np.testing.assert_allclose(logits[-1, :16], reference["last_logits_first16"], atol=1e-3)
    assert list(logits.argmax(axis=1)) == reference["argmax_per_position"]
    last = model.logits(ids, all_logits=False)
    assert last.shape == (1, 4096)
    np.testing.assert_allclose(last[0], logits[-1], atol=1e-4)


def test_logits_argmax_is_first_generated_token(model):
    ids = model.tokenize(PROMPT)
    first = cli_generate(MODEL, PROMPT, 16)["tokens"][0]
    assert model.generate_tokens(PROMPT, max_tokens=1) == [first]
    assert int(np.argmax(model.logits(ids)[-1])) == first
    assert int(np.argmax(model.logits(ids, all_logits=False)[0])) == first


def test_context_incremental(model):
    ids = model.tokenize(PROMPT)
    full = model.logits(ids)
    with model.context(n_ctx=64) as ctx:
        assert ctx.n_past == 0 and ctx.logits is None
        head = ctx.eval(ids[:4], all_logits=True)
        assert head.shape == (4, 4096) and ctx.n_past == 4
        np.testing.assert_allclose(head, full[:4], atol=1e-3)
        for i in range(4, len(ids)):
            row = ctx.eval([ids[i]])
            np.testing.assert_allclose(row[0], full[i], atol=1e-3)
        assert ctx.n_past == len(ids)
        np.testing.assert_array_equal(ctx.logits, row)
        ctx.truncate(4)
        assert ctx.n_past == 4
        again = ctx.eval(ids[4:], all_logits=True)
        np.testing.assert_allclose(again, full[4:], atol=1e-3)
    assert ctx.closed
    with pytest.raises(lmpress.InvalidArgument, match="closed"):
        ctx.eval(ids)


def test_context_errors(model):
    with pytest.raises(lmpress.Error, match="bogus"):
        model.context(cache_type="bogus")
    with model.context(n_ctx=8) as ctx:
        with pytest.raises(lmpress.Error):
            ctx.eval(list(range(2, 12)))  # 10 tokens into 8 positions
        with pytest.raises(lmpress.InvalidArgument, match="4096"):
            ctx.eval([4096])


# ----------------------------------------------------------------- sampler


def test_sampler(model):
    logits = model.logits(model.tokenize(PROMPT), all_logits=False)
    greedy = lmpress.Sampler()
    assert greedy.sample(logits) == int(np.argmax(logits[-1]))
    assert greedy.sample(logits[0].astype(np.float64)) == int(np.argmax(logits[-1]))
    # A repetition penalty over a history holding the argmax moves the choice.
    top = int(np.argmax(logits[-1]))
    assert lmpress.Sampler(repeat_penalty=100.0).sample(logits, history=[top]) != top
    # Seeded sampling repeats; another seed differs somewhere in 50 draws.
    s1 = lmpress.Sampler(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    s2 = lmpress.Sampler(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    s3 = lmpress.Sampler(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=8)
    a = [s1.sample(logits) for _ in range(50)]
    assert a == [s2.sample(logits) for _ in range(50)]
    assert a != [s3.sample(logits) for _ in range(50)]
    assert len(set(a)) > 1
    with pytest.raises(lmpress.InvalidArgument):
        lmpress.Sampler(repeat_penalty=0.0)


# -------------------------------------------------------------- generation


def test_generate_matches_cli(model):
    ref = cli_generate(MODEL, PROMPT, 16)
    gen = model.generate(PROMPT, max_tokens=16)
    pairs = list(gen)
    assert [t.id for t in pairs] == ref["tokens"]
    assert all(isinstance(t, lmpress.Token) and isinstance(t.text, str) for t in pairs)
    assert gen.tokens == ref["tokens"]
    assert gen.text == "".join(t.text for t in pairs) == ref["text"]
    r = gen.result
    assert r is not None and r.stop_reason == "length"
    assert (r.n_prompt, r.n_generated) == (ref["n_prompt"], 16)
    assert r.tokens == tuple(ref["tokens"])
    done = model.complete(PROMPT, max_tokens=16)
    assert list(done.tokens) == ref["tokens"] and done.text == ref["text"]
    assert done.stop_reason == "length" and done.gen_seconds > 0
    assert model.generate_tokens(PROMPT, 16) == ref["tokens"]
    assert model.generate_text(PROMPT, 16) == ref["text"]


def test_sampled_generate_matches_cli(model):
    args = dict(temperature=0.8, top_k=20, top_p=0.9, min_p=0.02, seed=1234, repeat_penalty=1.3)
    ref = cli_generate(MODEL, PROMPT, 24, "--temp", "0.8", "--top-k", "20", "--top-p", "0.9", "--min-p", "0.02",
                       "-s", "1234", "--repeat-penalty", "1.3")
    assert model.generate_tokens(PROMPT, 24, **args) == ref["tokens"]
    assert [t.id for t in model.generate(PROMPT, 24, **args)] == ref["tokens"]
    assert model.generate_tokens(PROMPT, 24, **{**args, "seed": 99}) != ref["tokens"]


def test_generate_kv_cache_options_match_cli(model):
    plain = cli_generate(MODEL, PROMPT, 24)["tokens"]
    ref = cli_generate(MODEL, PROMPT, 24, "--cache-type", "kivi2", "--kv-group", "16")["tokens"]
    assert ref != plain  # the options matter
    assert model.generate_tokens(PROMPT, 24, cache_type="kivi2", kv_group=16) == ref
    assert [t.id for t in model.generate(PROMPT, 24, cache_type_k="kivi2", cache_type_v="kivi2", kv_group=16)] == ref
    ref = cli_generate(MODEL, PROMPT, 40, "--kv-policy", "sink-window:4,16", "--cache-type-v", "bf16")["tokens"]
    assert model.generate_tokens(PROMPT, 40, kv_policy="sink-window:4,16", cache_type_v="bf16") == ref
    with pytest.raises(lmpress.Error, match="head size of 48"):
        model.generate_tokens(PROMPT, 4, cache_type="q8_0")


def test_generate_ignore_eos_and_context_stop(model):
    r = model.complete(PROMPT, max_tokens=1000, ignore_eos=True)
    assert r.stop_reason == "context"
    assert r.n_prompt + r.n_generated <= model.info.n_ctx_train
    r = model.complete(PROMPT, max_tokens=40, ignore_eos=True, n_ctx=20)
    assert r.stop_reason == "context" and r.n_prompt + r.n_generated <= 20


def test_generate_break_stops_generation(model):
    ref = cli_generate(MODEL, PROMPT, 16)["tokens"]
    gen = model.generate(PROMPT, max_tokens=200, ignore_eos=True)
    got = []
    for tok in gen:
        got.append(tok.id)
        if len(got) == 3:
            break
    assert not gen.done and gen.result is None  # paused, not ended
    gen.close()
    assert got == ref[:3]
    r = gen.result
    assert r is not None and r.stop_reason == "caller"
    assert r.n_generated == 3  # stepped by the iteration: nothing generated ahead
    assert r.tokens == tuple(ref[:3]) and gen.done
    assert list(gen) == []  # closed: nothing more
    gen.close()  # again: a no-op
    # Dropping the generator in the middle of a for loop stops it too.
    gen = model.generate(PROMPT, max_tokens=200, ignore_eos=True)
    handle = gen._g
    for i, _ in enumerate(gen):
        if i == 2:
            break
    del gen
    gc.collect()
    assert handle.done() and handle.result()["stop_reason"] == "caller"
    # Closed before its first token: the prompt never ran.
    gen = model.generate(PROMPT, max_tokens=200)
    gen.close()
    assert list(gen) == [] and gen.result.stop_reason == "caller" and gen.result.n_generated == 0
    # The model works on as before.
    assert [t.id for t in model.generate(PROMPT, max_tokens=16)] == ref
    with model.generate(PROMPT, max_tokens=200) as g:
        assert next(g).id == ref[0]
    assert g.result.stop_reason == "caller" and g.result.n_generated == 1


def test_generations_interleaved_and_from_threads(model):
    ref = model.generate_tokens(PROMPT, 16)
    # Two streams advanced in turn.
    a = model.generate(PROMPT, max_tokens=16)
    b = model.generate(PROMPT, max_tokens=16)
    pairs = list(zip(a, b))
    assert [x.id for x, _ in pairs] == ref and [y.id for _, y in pairs] == ref
    assert a.result.stop_reason == "length" and b.result is None  # zip asked b for no 17th token
    assert list(b) == [] and b.result.stop_reason == "length"
    # While a stream is paused, other calls go on.
    with model.generate(PROMPT, max_tokens=200, ignore_eos=True) as paused:
        next(paused)
        assert model.generate_tokens(PROMPT, 16) == ref
        assert int(np.argmax(model.logits(model.tokenize(PROMPT))[-1])) == ref[0]
        assert [t.id for t in paused][:15] == ref[1:]
    # Streams stepped from other threads, and one stream shared by threads (its steps take turns).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: [t.id for t in model.generate(PROMPT, 16)], range(4)))
    assert outs == [ref] * 4
    shared = model.generate(PROMPT, max_tokens=16)
    with ThreadPoolExecutor(4) as ex:
        steps = list(ex.map(lambda _: next(shared, None), range(20)))
    assert sorted(t.id for t in steps if t is not None) == sorted(ref) and steps.count(None) == 4
    assert shared.result.n_generated == 16
    # Threads sharing the model; one context shared by threads (its calls take turns).
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: model.generate_tokens(PROMPT, 16), range(4)))
    assert outs == [ref] * 4
    ids = model.tokenize(PROMPT)
    want = model.logits(ids)
    with model.context(n_ctx=64) as ctx:
        def step(_):
            ctx.truncate(0)  # (a turn may interleave with another thread's: compare shapes only)
            return ctx.eval(ids, all_logits=True).shape

        with ThreadPoolExecutor(4) as ex:
            assert list(ex.map(step, range(8))) == [want.shape] * 8


def test_generate_error_is_raised_once(model):
    gen = model.generate(PROMPT, max_tokens=8, cache_type="bogus")
    with pytest.raises(lmpress.Error, match="bogus"):
        next(gen)
    with pytest.raises(StopIteration):  # raised once
        next(gen)
    with pytest.raises(lmpress.InvalidArgument, match="n_predict"):
        model.complete(PROMPT, max_tokens=-1)


def _count_during(run) -> tuple[float, float]:
    """Runs run() in a thread while this one counts. Returns (counts per
    second, seconds)."""
    started, finished = threading.Event(), threading.Event()
    out = {}

    def target():
        started.set()
        try:
            out["value"] = run()
        finally:
            finished.set()

    th = threading.Thread(target=target)
    th.start()
    started.wait()
    count = 0
    t0 = time.perf_counter()
    while not finished.is_set():
        count += 1
    elapsed = time.perf_counter() - t0
    th.join()
    assert "value" in out
    return count / elapsed, elapsed


@pytest.mark.parametrize("how", ["complete", "iterate"])
def test_generate_releases_the_gil(model, how):
    def run():
        if how == "complete":
            return model.complete(PROMPT, max_tokens=200, ignore_eos=True).n_generated
        return len(list(model.generate(PROMPT, max_tokens=200, ignore_eos=True)))

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # a thread that holds the GIL in C would not give it up at all
    try:
        alone, _ = _count_during(lambda: time.sleep(0.1))
        rate, elapsed = _count_during(run)
    finally:
        sys.setswitchinterval(old)
    assert elapsed > 0.02, "the generation was too quick to tell"
    # This thread counted on through the generation: at a quarter of its speed
    # beside a sleeping thread at least (the computation takes a core).
    assert rate > 0.25 * alone * min(1.0, (os.cpu_count() or 1) / 2), (rate, alone, elapsed)


# -------------------------------------------------------------- perplexity


def test_perplexity_matches_cli(model, text_file):
    ref = cli("perplexity", str(MODEL), "-f", str(text_file), "--ctx", "128", "--chunks", "2")
    r = lmpress.perplexity(model, text_file.read_text(encoding="utf-8"), n_ctx=128, n_chunks=2)
    assert set(r) == {"ppl", "ppl_stderr", "mean_nll", "n_tokens_scored", "n_chunks"}
    assert r["ppl"] == pytest.approx(ref["ppl"], rel=1e-6)
    assert r["mean_nll"] == pytest.approx(ref["mean_nll"], rel=1e-6)
    assert r["ppl_stderr"] == pytest.approx(ref["ppl_stderr"], rel=1e-6)
    assert r["n_tokens_scored"] == ref["tokens_scored"]
    assert r["n_chunks"] == 2
    calls = []
    r2 = lmpress.perplexity(model, text_file.read_text(encoding="utf-8"), n_ctx=128, n_chunks=2,
                            progress=lambda *a: calls.append(a))
    assert r2["ppl"] == r["ppl"]
    assert calls and all(isinstance(s, str) and d <= t for s, d, t in calls)
    with pytest.raises(lmpress.InvalidArgument, match="n_ctx"):
        lmpress.perplexity(model, "some text", n_ctx=3)


# ------------------------------------------------------------------ errors


def test_load_missing_path_names_it(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(lmpress.Error) as e:
        lmpress.Model.load(missing)
    assert str(missing) in str(e.value)
    assert isinstance(e.value, RuntimeError)
    assert e.value.status == "failed" and e.value.code == 2


def test_progress_false_cancels():
    calls = []

    def progress(stage, done, total):
        calls.append((stage, done, total))
        return False

    with pytest.raises(lmpress.Cancelled) as e:
        lmpress.Model.load(MODEL, progress=progress)
    assert e.value.code == 3 and "cancel" in str(e.value)
    assert len(calls) == 1 and isinstance(calls[0][0], str)


def test_progress_exception_is_raised():
    class Boom(Exception):
        pass

    def progress(stage, done, total):
        raise Boom(stage)

    with pytest.raises(Boom):
        lmpress.Model.load(MODEL, progress=progress)


def test_progress_continues():
    calls = []
    m = lmpress.Model.load(MODEL, progress=lambda *a: calls.append(a))  # None: go on
    assert m.info.n_vocab == 4096 and calls
    with pytest.raises(TypeError):
        lmpress.Model.load(MODEL, progress=42)


def test_model_close(model):
    m = lmpress.Model.load(MODEL)
    ctx = m.context(n_ctx=32)
    gen = m.generate(PROMPT, max_tokens=4)
    m.close()
    assert m.closed
    with pytest.raises(lmpress.InvalidArgument, match="closed"):
        m.tokenize("x")
    # What was made from it holds it.
    assert ctx.eval(model.tokenize(PROMPT)).shape == (1, 4096)
    assert len(list(gen)) == 4


# --------------------------------------------------------------- quantize


def test_quantize_q8_0_then_generate(tmp_path):
    out = tmp_path / "lmp-8m-q8_0.gguf"
    stages = set()
    assert lmpress.quantize(MODEL, out, type="q8_0", progress=lambda s, d, t: stages.add(s)) == str(out)
    assert out.is_file() and out.stat().st_size < (MODEL / "model.safetensors").stat().st_size / 3
    assert stages
    q = lmpress.Model.load(out)
    assert q.info.format == "gguf" and q.info.n_vocab == 4096
    ref = cli_generate(out, PROMPT, 16)
    assert q.generate_tokens(PROMPT, 16) == ref["tokens"]
    assert len(list(q.generate(PROMPT, 16, ignore_eos=True))) == 16


def test_quantize_report_is_the_clis_json(tmp_path):
    ref = cli("quantize", str(MODEL), str(tmp_path / "cli.gguf"), "--type", "q4_0", "--pure")
    lmpress.quantize(MODEL, tmp_path / "py.gguf", type="q4_0", pure=True)
    got = lmpress.last_report()
    assert [(t["name"], t["type"], t["weight_error"]) for t in got["tensors"]] == \
        [(t["name"], t["type"], t["weight_error"]) for t in ref["tensors"]]
    assert got["bytes_out"] == ref["bytes_out"] and got["bpw"] == ref["bpw"]
    assert {t["type"] for t in got["tensors"]} == {"Q4_0"}  # --pure: no mix (q4_0's own gives Q8_0 output)
    # A failed call leaves the last report as it was.
    with pytest.raises(lmpress.Error):
        lmpress.quantize(MODEL, tmp_path / "x.gguf", type="q9_9")
    assert lmpress.last_report() == got


def test_quantize_rotate_matches_cli(tmp_path):
    ref = tmp_path / "cli.gguf"
    cli("quantize", str(MODEL), str(ref), "--type", "q8_0", "--rotate", "hadamard:3")
    out = tmp_path / "py.gguf"
    assert lmpress.quantize(MODEL, out, type="q8_0", rotate="hadamard:3") == str(out)
    assert out.read_bytes() == ref.read_bytes()
    with pytest.raises(lmpress.Error, match="--rotate spin"):
        lmpress.quantize(MODEL, tmp_path / "x.gguf", type="q8_0", rotate="spin")


def test_quantize_w8a8_matches_cli(tmp_path):
    ref = tmp_path / "cli"
    cli("quantize", str(MODEL), str(ref), "--scheme", "w8a8", "--smooth", "0.5", "--calib", str(CALIB),
        "--calib-samples", "4", "--calib-ctx", "64")
    out = tmp_path / "py"
    assert lmpress.quantize(MODEL, out, scheme="w8a8", smooth=0.5, calib=CALIB, calib_samples=4, calib_ctx=64) == str(out)
    for f in ("model.safetensors", "config.json"):
        assert (out / f).read_bytes() == (ref / f).read_bytes()
    with pytest.raises(lmpress.Error, match="--smooth 0.5: SmoothQuant before --scheme w8a8"):
        lmpress.quantize(MODEL, tmp_path / "x", type="int8-ch", smooth=0.5, calib=CALIB)


def test_quantize_compensate_matches_cli(tmp_path):
    ref = tmp_path / "cli.gguf"
    args = ["--calib", str(CALIB), "--calib-samples", "4", "--calib-ctx", "64"]
    cli("quantize", str(MODEL), str(ref), "--type", "q4_0", "--compensate", "rank=4", *args)
    out = tmp_path / "py.gguf"
    (tmp_path / "py").mkdir()
    adapter = tmp_path / "py" / "cli.eora.gguf"  # the same name: the adapter records its file's stem
    assert lmpress.quantize(MODEL, out, type="q4_0", compensate="rank=4", compensate_out=adapter,
                            calib=CALIB, calib_samples=4, calib_ctx=64) == str(out)
    assert out.read_bytes() == ref.read_bytes()
    assert adapter.read_bytes() == (tmp_path / "cli.eora.gguf").read_bytes()
    with pytest.raises(lmpress.Error, match="rank must be a whole number"):
        lmpress.quantize(MODEL, tmp_path / "x.gguf", type="q4_0", compensate="rank=0", calib=CALIB)


def test_prune_compensate_matches_cli(tmp_path):
    args = ["--calib", str(CALIB), "--calib-samples", "4", "--calib-ctx", "64"]
    cli("prune", str(MODEL), str(tmp_path / "cli.gguf"), "--method", "wanda", "--nm", "2:4", "--compensate", "rank=4",
        *args)
    (tmp_path / "py").mkdir()
    out = tmp_path / "py" / "cli.gguf"
    assert lmpress.prune(MODEL, out, method="wanda", nm="2:4", compensate="rank=4", calib=CALIB, calib_samples=4,
                         calib_ctx=64) == str(out)
    assert out.read_bytes() == (tmp_path / "cli.gguf").read_bytes()
    assert (tmp_path / "py" / "cli.eora.gguf").read_bytes() == (tmp_path / "cli.eora.gguf").read_bytes()


def test_quantize_cancel_and_errors(tmp_path):
    out = tmp_path / "cancelled.gguf"
    with pytest.raises(lmpress.Cancelled):
        lmpress.quantize(MODEL, out, type="q8_0", progress=lambda *a: False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(lmpress.Error, match="q9_9"):
        lmpress.quantize(MODEL, out, type="q9_9")
    assert not out.exists()


# ------------------------------------------------------- prune, convert


CALIB = SHARED / "data" / "calib" / "docs-calib.txt"
WIKI = SHARED / "data" / "wikitext-2" / "wiki.test.raw"
W256 = SHARED / "models" / "lmp-8m-w256"


def cli_run(*args: str) -> subprocess.CompletedProcess:
    """The command line as given (no -t, no --json: convert takes neither)."""
    if not CLI.exists():
        pytest.skip(f"no lmpress command line at {CLI} (set LMPRESS_CLI)")
    r = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{CLI} {' '.join(args)} failed: {r.stderr}"
    return r


def read_text(path: Path) -> str:
    """A file's text byte for byte (no newline translation), as the command line reads -f."""
    return path.read_bytes().decode("utf-8")


@pytest.mark.skipif(not CALIB.exists(), reason=f"no calibration text at {CALIB}")
def test_prune_sparsegpt_2_4_matches_cli(tmp_path):
    ref = tmp_path / "cli.gguf"
    cli("prune", str(MODEL), str(ref), "--method", "sparsegpt", "--nm", "2:4", "--calib", str(CALIB),
        "--calib-samples", "4", "--calib-ctx", "64")
    out = tmp_path / "py.gguf"
    stages = set()
    got = lmpress.prune(MODEL, out, method="sparsegpt", nm="2:4", calib=CALIB, calib_samples=4, calib_ctx=64,
                        progress=lambda s, d, t: stages.add(s))
    assert got == str(out) and stages
    assert out.read_bytes() == ref.read_bytes()
    # 2:4: half of every block linear's weights are zero, at least two in every group of four.
    m = lmpress.Model.load(out)
    assert m.info.format == "gguf" and m.info.n_params == lmpress.Model.load(MODEL).info.n_params
    assert len(m.generate_tokens(PROMPT, 4, ignore_eos=True)) == 4


def test_prune_structured_and_targets_match_cli(tmp_path):
    ref = tmp_path / "cli.gguf"
    cli("prune", str(MODEL), str(ref), "--structured", "heads=0.25,ffn=0.3", "--calib", str(CALIB),
        "--calib-samples", "4", "--calib-ctx", "64")
    out = tmp_path / "py.gguf"
    lmpress.prune(MODEL, out, structured="heads=0.25,ffn=0.3", calib=CALIB, calib_samples=4, calib_ctx=64)
    assert out.read_bytes() == ref.read_bytes()
    ref = tmp_path / "cli-t.gguf"
    cli("prune", str(MODEL), str(ref), "--sparsity", "0.5", "--targets", r"re:model\.layers\.[0-2]\.",
        "--ignore", "model.layers.1.mlp")
    out = tmp_path / "py-t.gguf"
    lmpress.prune(MODEL, out, sparsity=0.5, targets=[r"re:model\.layers\.[0-2]\."], ignore="model.layers.1.mlp")
    assert out.read_bytes() == ref.read_bytes()
    with pytest.raises(lmpress.Error, match="'model.layers.9' selects none"):
        lmpress.prune(MODEL, tmp_path / "x.gguf", sparsity=0.5, targets=["model.layers.9"])
    with pytest.raises(lmpress.InvalidArgument, match="no method, sparsity or nm"):
        lmpress.prune(MODEL, tmp_path / "x.gguf", sparsity=0.5, structured="ffn=0.3", calib=CALIB)


def test_lowrank_matches_cli_and_keeps_the_ratio(tmp_path):
    ref = tmp_path / "cli.gguf"
    want = cli("lowrank", str(MODEL), str(ref), "--method", "svd-llm", "--ratio", "0.4", "--calib", str(CALIB),
               "--calib-samples", "4", "--calib-ctx", "64", "--ignore", "model.layers.0")
    out = tmp_path / "py.gguf"
    assert lmpress.lowrank(MODEL, out, ratio=0.4, calib=CALIB, calib_samples=4, calib_ctx=64,
                           ignore="model.layers.0") == str(out)
    assert out.read_bytes() == ref.read_bytes()
    got = lmpress.last_report()
    assert got["tensors"] == want["tensors"]
    assert not any(t["name"].startswith("blk.0.") for t in got["tensors"])
    for t in got["tensors"]:  # the largest rank r with r * (out + in) <= 0.6 * out * in
        rows, cols = (int(x) for x in t["shape"].strip("[]").split(","))
        r = t["rank"]
        assert r * (rows + cols) <= 0.6 * rows * cols < (r + 1) * (rows + cols), t
        assert t["params_after"] == r * (rows + cols)
    m = lmpress.Model.load(out)
    assert m.info.n_params == got["params_after"]
    assert len(m.generate_tokens("Once upon a time", 4)) == 4
    m.close()
    with pytest.raises(lmpress.Error, match="not both"):
        lmpress.lowrank(MODEL, tmp_path / "x.gguf", method="svd", ratio=0.2, rank=8)
    with pytest.raises(lmpress.Error, match="--ratio 1: a fraction"):
        lmpress.lowrank(MODEL, tmp_path / "x.gguf", method="svd", ratio=1)
    assert not (tmp_path / "x.gguf").exists()


def test_quantize_per_module_formats_match_cli(tmp_path):
    ref = tmp_path / "cli"
    cli("quantize", str(MODEL), str(ref), "--type", "int4-g32", "--tensor-type", "ffn_down=int8-ch", "--ignore",
        "model.layers.0.self_attn")
    out = tmp_path / "py"
    lmpress.quantize(MODEL, out, type="int4-g32", tensor_types=["ffn_down=int8-ch"], ignore=["model.layers.0.self_attn"])
    for f in ("model.safetensors", "config.json"):
        assert (out / f).read_bytes() == (ref / f).read_bytes()
    with pytest.raises(TypeError, match="tensor_types must hold str"):
        lmpress.quantize(MODEL, tmp_path / "x", type="int4-g32", tensor_types=[3])


def test_prune_magnitude_quantized_matches_cli(tmp_path):
    ref = tmp_path / "cli.gguf"
    cli("prune", str(MODEL), str(ref), "--sparsity", "0.3", "--quantize", "q8_0")
    out = tmp_path / "py.gguf"
    assert lmpress.prune(str(MODEL), str(out), sparsity=0.3, quantize="q8_0") == str(out)
    assert out.read_bytes() == ref.read_bytes()
    assert out.stat().st_size < (MODEL / "model.safetensors").stat().st_size / 2


def test_prune_errors(tmp_path):
    out = tmp_path / "out.gguf"
    bad = [
        (dict(method="sparsegpt", nm="2:4"), "calib"),
        (dict(method="wanda", sparsity=0.5), "calib"),
        (dict(sparsity=0.5, nm="2:4"), "sparsity or nm"),
        (dict(), "sparsity or nm"),
        (dict(sparsity=1.0), "sparsity"),
        (dict(sparsity=-0.1), "sparsity"),
        (dict(nm="2-4"), "nm"),
        (dict(nm="4:2"), "nm"),
        (dict(method="bogus", sparsity=0.5), "method"),
        (dict(method="sparsegpt", nm="2:4", calib=CALIB, damp=0.0), "damp"),
        (dict(method="wanda", sparsity=0.5, calib=CALIB, calib_samples=0), "calib_samples"),
        (dict(method="wanda", sparsity=0.5, calib=CALIB, calib_ctx=1), "calib_ctx"),
    ]
    for kwargs, word in bad:
        with pytest.raises(lmpress.InvalidArgument, match=word):
            lmpress.prune(MODEL, out, **kwargs)
    with pytest.raises(lmpress.Error, match="q9_9"):
        lmpress.prune(MODEL, out, sparsity=0.5, quantize="q9_9")
    with pytest.raises(lmpress.Error, match="no-such"):
        lmpress.prune(tmp_path / "no-such-model", out, sparsity=0.5)
    with pytest.raises(lmpress.Cancelled):
        lmpress.prune(MODEL, out, sparsity=0.5, progress=lambda *a: False)

    class Boom(Exception):
        pass

    def boom(*a):
        raise Boom()

    with pytest.raises(Boom):
        lmpress.prune(MODEL, out, sparsity=0.5, progress=boom)
    assert list(tmp_path.iterdir()) == []


def test_convert_matches_cli(tmp_path):
    ref = tmp_path / "cli.gguf"
    cli_run("convert", str(MODEL), str(ref), "--dtype", "f16")
    out = tmp_path / "py.gguf"
    assert lmpress.convert(MODEL, out, dtype="f16") == str(out)
    assert out.read_bytes() == ref.read_bytes()
    assert lmpress.convert(MODEL, tmp_path / "upper.gguf", dtype="F16")  # any case, as --dtype
    assert (tmp_path / "upper.gguf").read_bytes() == ref.read_bytes()
    # A Hugging Face directory (format chosen by the name: no .gguf), back from the GGUF file.
    ref_dir, out_dir = tmp_path / "cli-hf", tmp_path / "py-hf"
    cli_run("convert", str(ref), str(ref_dir))
    assert lmpress.convert(out, out_dir) == str(out_dir)
    files = sorted(p.name for p in ref_dir.iterdir())
    assert files and sorted(p.name for p in out_dir.iterdir()) == files
    for name in files:
        assert (out_dir / name).read_bytes() == (ref_dir / name).read_bytes(), name
    assert lmpress.Model.load(out_dir).info.format == "hf"
    # format="gguf" whatever the name.
    lmpress.convert(MODEL, tmp_path / "f16.bin", dtype="f16", format="gguf")
    assert (tmp_path / "f16.bin").read_bytes() == ref.read_bytes()


def test_convert_errors(tmp_path):
    with pytest.raises(lmpress.Error, match="dtype"):
        lmpress.convert(MODEL, tmp_path / "x.gguf", dtype="f12")
    with pytest.raises(lmpress.Error, match="format"):
        lmpress.convert(MODEL, tmp_path / "x.gguf", format="onnx")
    with pytest.raises(lmpress.Error, match="no-such"):
        lmpress.convert(tmp_path / "no-such-model", tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


# -------------------------------------------------------- kld, compare


@pytest.mark.skipif(not (W256.exists() and WIKI.exists()), reason=f"no {W256} or {WIKI}")
def test_kld_cache_type_matches_cli():
    ref = cli("kld", str(W256), str(W256), "-f", str(WIKI), "--ctx", "128", "--chunks", "2",
              "--base-cache-type", "f32", "--cache-type", "q4_0")
    m = lmpress.Model.load(W256)
    text = read_text(WIKI)
    calls = []
    r = lmpress.kld(m, m, text, n_ctx=128, n_chunks=2, cache_type="q4_0", base_cache_type="f32",
                    progress=lambda *a: calls.append(a))
    assert set(r) == {"kld", "kld_unc", "ppl", "ppl_base", "same_top", "rms_p_diff", "n_tokens", "n_chunks"}
    assert r["kld"] == pytest.approx(ref["kld"]["value"], rel=1e-9)
    assert r["kld"] > 0  # the q4_0 cache changes the distributions
    assert r["kld_unc"] == pytest.approx(ref["kld"]["unc"], rel=1e-9)
    assert r["ppl"] == pytest.approx(ref["ppl"]["value"], rel=1e-9)
    assert r["ppl_base"] == pytest.approx(ref["ppl_base"]["value"], rel=1e-9)
    assert r["same_top"] == pytest.approx(ref["same_top"]["value"], rel=1e-9)
    assert r["rms_p_diff"] == pytest.approx(ref["rms_p_diff"]["value"], rel=1e-9)
    assert (r["n_tokens"], r["n_chunks"]) == (ref["n_tokens"], ref["n_chunks"]) and r["n_chunks"] == 2
    assert calls and all(isinstance(s, str) and d <= t for s, d, t in calls)
    # The base's perplexity is lmpress.perplexity's with its cache; one cache type for both: no divergence.
    assert r["ppl_base"] == pytest.approx(
        lmpress.perplexity(m, text, n_ctx=128, n_chunks=2, cache_type="f32")["ppl"], rel=1e-9)
    same = lmpress.kld(m, m, text, n_ctx=128, n_chunks=1)
    assert same["kld"] == pytest.approx(0.0, abs=1e-9) and same["same_top"] == 1.0
    assert same["ppl"] == same["ppl_base"]


def test_kld_errors(model, text_file):
    text = read_text(text_file)
    with pytest.raises(lmpress.InvalidArgument, match="n_ctx"):
        lmpress.kld(model, model, text, n_ctx=4)
    with pytest.raises(lmpress.InvalidArgument, match="n_chunks"):
        lmpress.kld(model, model, text, n_ctx=64, n_chunks=0)
    with pytest.raises(lmpress.Error, match="bogus"):
        lmpress.kld(model, model, text, n_ctx=64, n_chunks=1, cache_type="bogus")
    with pytest.raises(lmpress.Error, match="bogus"):
        lmpress.kld(model, model, text, n_ctx=64, n_chunks=1, base_cache_type="bogus")
    with pytest.raises(TypeError, match="cand"):
        lmpress.kld(model, str(MODEL), text)
    with pytest.raises(lmpress.Cancelled):
        lmpress.kld(model, model, text, n_ctx=64, n_chunks=2, progress=lambda *a: False)
    closed = lmpress.Model.load(MODEL)
    closed.close()
    with pytest.raises(lmpress.InvalidArgument, match="closed"):
        lmpress.kld(model, closed, text, n_ctx=64, n_chunks=1)


@pytest.fixture(scope="session")
def q8_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("q8") / "lmp-8m-q8_0.gguf"
    lmpress.quantize(MODEL, out, type="q8_0")
    return out


@pytest.mark.skipif(not WIKI.exists(), reason=f"no {WIKI}")
def test_compare_matches_cli(model, q8_model):
    ref = cli("compare", str(MODEL), str(q8_model), "-f", str(WIKI), "-c", "128", "--chunks", "2")
    text = read_text(WIKI)
    rows = lmpress.compare([MODEL, q8_model], text, n_ctx=128, n_chunks=2)
    assert len(rows) == len(ref) == 2
    base, cand = rows
    assert set(base) == {"label", "path", "size_bytes", "n_params", "bits_per_weight", "compression", "ppl",
                         "ppl_stderr"}
    assert set(cand) == {"label", "path", "size_bytes", "n_params", "bits_per_weight", "compression", "ppl",
                         "ppl_diff", "kld", "kld_unc", "same_top"}
    for got, want in zip(rows, ref):
        for k in ("label", "path", "size_bytes", "n_params"):
            assert got[k] == want[k], k
        for k in ("bits_per_weight", "compression", "ppl") + (("ppl_stderr",) if got is base else
                                                              ("ppl_diff", "kld", "kld_unc", "same_top")):
            assert got[k] == pytest.approx(want[k], rel=1e-9), k
    assert base["compression"] == 1.0 and cand["compression"] > 3
    assert cand["kld"] > 0 and cand["label"] == q8_model.name and base["label"] == MODEL.name
    # Loaded models (left open) and labels give the same numbers; the base's ppl is lmpress.perplexity's.
    q = lmpress.Model.load(q8_model)
    again = lmpress.compare([model, q], text, n_ctx=128, n_chunks=2, labels=["f32", "q8_0"])
    assert [r["label"] for r in again] == ["f32", "q8_0"]
    assert not model.closed and not q.closed
    for a, b in zip(again, rows):
        assert {k: v for k, v in a.items() if k != "label"} == {k: v for k, v in b.items() if k != "label"}
    assert base["ppl"] == lmpress.perplexity(model, text, n_ctx=128, n_chunks=2)["ppl"]
    k = lmpress.kld(model, q, text, n_ctx=128, n_chunks=2)
    assert cand["ppl_diff"] == pytest.approx(k["ppl"] - k["ppl_base"], rel=1e-12)
    assert lmpress.compare([MODEL], text, n_ctx=128, n_chunks=1)[0]["ppl"] > 0  # the base alone


def test_compare_errors(model, tmp_path, text_file):
    text = read_text(text_file)
    with pytest.raises(lmpress.InvalidArgument, match="labels"):
        lmpress.compare([model, model], text, n_ctx=64, n_chunks=1, labels=["one"])
    with pytest.raises(lmpress.InvalidArgument, match="no models"):
        lmpress.compare([], text)
    with pytest.raises(lmpress.InvalidArgument, match="n_chunks"):
        lmpress.compare([model], text, n_chunks=0)
    with pytest.raises(lmpress.Error, match="no-such"):
        lmpress.compare([model, tmp_path / "no-such-model"], text, n_ctx=64, n_chunks=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(lmpress.Error):
        lmpress.compare([MODEL, empty], text, n_ctx=64, n_chunks=1)
    assert not model.closed


# ---------------------------------------------------------- chat templates


def test_chat_template_matches_cli(model, tmp_path):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi — there?"}]
    f = tmp_path / "messages.json"
    f.write_text(json.dumps(messages))
    for template in ("chatml", "llama2", "zephyr"):
        r = subprocess.run([str(CLI), "chat-template", str(MODEL), "--messages", str(f), "--template", template],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"lmpress chat-template failed: {r.stderr}")
        want = r.stdout
        got = lmpress.chat_template(messages, model=model, template=template)
        assert got == want or got + "\n" == want, template
    assert lmpress.chat_template([("user", "Hi")], template="chatml") == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert lmpress.chat_template([("user", "Hi")], template="chatml", add_generation_prompt=False) == (
        "<|im_start|>user\nHi<|im_end|>\n")
    with pytest.raises(lmpress.InvalidArgument):
        lmpress.chat_template([("user", "Hi")])
    with pytest.raises(lmpress.Error, match="chat template"):
        lmpress.chat_template([("user", "Hi")], model=model)


# ------------------------------------------------------------------- stubs


def test_stubs_match_the_module():
    import ast

    pkg = Path(lmpress.__file__).parent
    assert (pkg / "py.typed").is_file()
    tree = ast.parse((pkg / "_lmpress.pyi").read_text())
    mod = lmpress._lmpress
    stub_names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            stub_names.add(node.name)
            params = [a.arg for a in node.args.args]
            doc = getattr(mod, node.name).__doc__ or ""
            assert doc.startswith(f"{node.name}(" + ", ".join(f"{p}:" for p in params[:1])), (node.name, doc[:80])
            for p in params:
                assert f"{p}:" in doc.split("\n")[0], (node.name, p)
        elif isinstance(node, ast.ClassDef):
            stub_names.add(node.name)
            cls = getattr(mod, node.name)
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)} - {"__init__"}
            public = {n for n in dir(cls) if not n.startswith("_")}
            assert methods == public, (node.name, methods ^ public)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stub_names.add(node.target.id)
    public = {n for n in dir(mod) if not n.startswith("_")}
    assert stub_names == public, stub_names ^ public


def test_ctrl_c_interrupts_a_long_call(text_file):
    """SIGINT during perplexity of a long text, a long complete() and a long
    streaming generation consumed by list() (tens of seconds each) raises
    KeyboardInterrupt promptly, and the model works on."""
    script = f"""
import os, signal, sys, threading, time
import lmpress
# A process started in the background of a non-interactive shell inherits
# SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
lmpress.set_threads({THREADS})
m = lmpress.Model.load({str(MODEL)!r})
text = open({str(text_file)!r}, encoding="utf-8").read() * 40
long = dict(max_tokens=30000, ignore_eos=True, kv_policy="sink-window:4,64")  # never fills the context
gen = m.generate("Once upon a time", **long)
calls = [
    ("perplexity", lambda: lmpress.perplexity(m, text, n_ctx=128)),
    ("complete", lambda: m.complete("Once upon a time", **long)),
    ("stream", lambda: list(gen)),  # list() steps the iterator in C: its own signal check stops it
]
for name, call in calls:
    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    t0 = time.perf_counter()
    try:
        call()
        print(name, "finished", time.perf_counter() - t0)
    except KeyboardInterrupt:
        print(name, "interrupted", time.perf_counter() - t0)
gen.close()
print(gen.result.stop_reason, 0 < len(gen.tokens) <= gen.result.n_generated <= len(gen.tokens) + 1)
print(m.generate_tokens("Once upon a time", 3))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 5, r.stdout
    for line, name in zip(lines, ("perplexity", "complete", "stream")):
        got, what, seconds = line.split()
        assert (got, what) == (name, "interrupted") and float(seconds) < 5, r.stdout
    assert lines[3] == "caller True", r.stdout
    assert lines[4] == str(cli_generate(MODEL, PROMPT, 3)["tokens"])
