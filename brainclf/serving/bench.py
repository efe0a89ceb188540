"""Benchmarks (speed, not behaviour): `python -m brainclf bench` (brainclf.cli.bench prints the table and
writes the JSON).

Measures on this machine: model load; single-image latency of preprocessing, forward pass and Grad-CAM
(median / p95 over >= 50 runs after warm-up) against the naive notebook path (`model.predict` on one
image, Grad-CAM sub-model rebuilt per call); evaluation throughput over a folder including decoding;
a whole `python -m brainclf evaluate` process; training seconds per epoch (timed steps, extrapolated);
peak memory; and app cold start (`streamlit run` to /_stcore/health, and to the first prediction in a
headless browser when Debian's chromium is installed).
"""

from __future__ import annotations

import contextlib
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..evaluation.evaluate import evaluate_folder
from ..inference.explain import GradCam
from ..inference.predict import Predictor
from ..input.preprocess import decode_image, to_model_input
from ..model.card import machine_description, read_card
from .serve import free_port, start_streamlit, stop, wait_healthy


def _stats(samples_s: list[float]) -> dict:
    ms = np.array(samples_s) * 1000
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "runs": len(ms)}


def _time(fn, runs: int, warmup: int = 5) -> dict:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return _stats(out)


def bench_model(model_path: Path, image_path: Path, runs: int = 50) -> dict:
    import keras
    import tensorflow as tf


    t = time.perf_counter()
    predictor = Predictor.load(model_path, tta=False)  # one forward pass per image
    load_s = time.perf_counter() - t
    img = decode_image(image_path)
    data = Path(image_path).read_bytes()
    x = to_model_input(img, predictor.contract)
    cam = GradCam(predictor.model, predictor.card.gradcam_layer)
    r = {"model": predictor.card.name, "params": predictor.card.params, "load_s": load_s}
    r["decode"] = _time(lambda: decode_image(data), runs)
    r["preprocess"] = _time(lambda: to_model_input(img, predictor.contract), runs)
    r["forward"] = _time(lambda: predictor.predict_arrays(x), runs)
    r["gradcam"] = _time(lambda: cam(x), runs)

    def end_to_end():  # preprocess + predict + Grad-CAM of one decoded image (one pass, as the app does)
        return predictor.explain_arrays(to_model_input(img, predictor.contract)[None])

    r["end_to_end"] = _time(end_to_end, runs)
    r["predict_with_ood"] = _time(lambda: predictor.predict(img), runs)

    # The naive notebook path: model.predict per image, Grad-CAM sub-model rebuilt and run eagerly.
    model = predictor.model

    layer_names = predictor.card.gradcam_layer
    layer_names = [layer_names] if isinstance(layer_names, str) else layer_names

    def naive_gradcam():
        grad_model = keras.Model(model.inputs, [[model.get_layer(n).output for n in layer_names],
                                                model.get_layer("logits").output])
        with tf.GradientTape() as tape:
            fmaps, logits = grad_model(x[None])
            score = logits[:, int(tf.argmax(logits[0]))]
        grads = tape.gradient(score, fmaps)
        cam = sum(tf.reduce_sum(f[0] * tf.reduce_mean(g, axis=(0, 1, 2)), -1) for f, g in zip(fmaps, grads))
        return tf.nn.relu(cam).numpy()

    naive_runs = max(20, runs // 2)
    r["naive_forward"] = _time(lambda: model.predict(x[None], verbose=0), naive_runs, warmup=2)
    r["naive_gradcam"] = _time(naive_gradcam, naive_runs, warmup=2)
    naive = r["naive_forward"]["median_ms"] + r["naive_gradcam"]["median_ms"]
    compiled = r["forward"]["median_ms"] + r["gradcam"]["median_ms"]
    r["speedup_vs_naive"] = naive / compiled
    r["gradcam_over_forward"] = r["gradcam"]["median_ms"] / r["forward"]["median_ms"]
    return r


def bench_evaluation(model_path: Path, folder: Path) -> dict:
    predictor = Predictor.load(model_path, tta=False)  # one forward pass per image
    evaluate_folder(predictor, folder)  # warm-up: compile, page cache
    t = time.perf_counter()
    report = evaluate_folder(predictor, folder, training_root="/nonexistent")  # no clean-subset hashing
    dt = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "brainclf", "evaluate", "--model", str(model_path), "--data", str(folder),
                    "--json"], check=True, capture_output=True)
    cli = time.perf_counter() - t
    return {"images": report["n"], "seconds": dt, "images_per_s": report["n"] / dt, "cli_process_s": cli}


def bench_training(arch: str, steps: int = 20, contract=None, precision: str = "float32") -> dict:
    """Seconds per epoch of `arch` (at `contract`, default: the architecture's) on this machine: `steps` timed
    training steps at batch 32 on random arrays (speed only), scaled to the 5,137-image training split of the
    bundled models (augmentation included; not the per-epoch precise BatchNorm and validation)."""
    import keras

    from ..model.architectures import build_model, dtype_policy, get_architecture
    from ..training import TrainConfig, tf_dataset

    config = TrainConfig(architecture=arch)
    contract = contract or get_architecture(arch).default_contract
    x = np.random.default_rng(0).random((32 * (steps + 3), *contract.shape), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 4, len(x))
    with dtype_policy(precision):  # an ensemble's members train one after the other: same work per epoch
        model = build_model(arch, contract)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    ds = iter(tf_dataset(x, y, config, training=True).repeat())
    for _ in range(3):
        model.train_on_batch(*next(ds))
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(*next(ds))
    per_step = (time.perf_counter() - t) / steps
    return {"architecture": f"{arch} {contract.size}px {precision}", "s_per_step": per_step,
            "s_per_epoch_est": per_step * np.ceil(5137 / 32)}


def synthetic_slice(size: int = 224, lesion: bool = True) -> Image.Image:
    """A made-up axial 'slice' for benchmarks and pictures (no dataset image): an ellipse of soft tissue with a
    bright rim, smooth texture and, with `lesion`, a bright round blob. Grayscale."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:size, :size] / size
    r = ((yy - 0.5) / 0.42) ** 2 + ((xx - 0.5) / 0.35) ** 2
    texture = np.asarray(Image.fromarray(rng.uniform(0, 40, (8, 8)).astype(np.uint8)).resize((size, size)), float)
    img = np.where(r < 1, 70 + 50 * (1 - r) + texture, 0) + np.where((r > 0.86) & (r < 1), 90, 0)
    if lesion:
        img += 110 * np.exp(-(((yy - 0.38) / 0.07) ** 2 + ((xx - 0.6) / 0.07) ** 2))
    return Image.fromarray(img.clip(0, 255).astype(np.uint8), mode="L")


def bench_app(image: Path | None, timeout: float = 60, visit_after: float = 0.0) -> dict:
    """Cold start as a user meets it: `streamlit run app.py`, then (with chromium, launched beforehand so its
    own start-up is not counted) the root URL → the Predict page → upload `image` → its Grad-CAM.

    Returns seconds since `streamlit run` for each step reached: health_s (/_stcore/health ok), home_s (Home
    painted), predict_page_s (the upload box shown), result_s (the case's scan shown), first_prediction_s
    (Grad-CAM shown: for a referred slice, whose overlay starts off, after a click on its toggle); *_error on
    failure.
    `visit_after`: the first visit waits that many seconds after health (a server started before anyone comes);
    visit_to_prediction_s is then the time from the visit to the Grad-CAM.
    """
    browser_ready = image is not None and Path("/usr/bin/chromium").exists()
    with _browser(browser_ready) as page:
        port = free_port()
        t0 = time.perf_counter()
        proc = start_streamlit(port)
        out: dict = {}
        try:
            try:
                wait_healthy(f"http://127.0.0.1:{port}", timeout=timeout, proc=proc)
                out["health_s"] = time.perf_counter() - t0
            except (RuntimeError, TimeoutError) as e:
                out["health_error"] = str(e)
            if page is not None and "health_s" in out:
                time.sleep(visit_after)
                try:
                    _first_prediction(page, f"http://127.0.0.1:{port}", image, t0, timeout, out)
                except Exception as e:  # noqa: BLE001 - a benchmark reports what failed and carries on
                    out["first_prediction_error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        finally:
            stop(proc)
    return out


@contextlib.contextmanager
def _browser(wanted: bool):
    """A headless chromium page, or None when not wanted."""
    if not wanted:
        yield None
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto("about:blank")
            yield page
        finally:
            browser.close()


def _first_prediction(page, url: str, image: Path, t0: float, timeout: float, out: dict) -> None:
    """Root URL → Predict (sidebar link) → upload → Grad-CAM, recording when each step was reached."""
    page.set_default_timeout(timeout * 1000)
    visit = time.perf_counter()
    page.goto(url)
    page.get_by_role("heading", name="brainclf — brain MRI tumour classifier").wait_for()
    out["home_s"] = time.perf_counter() - t0
    page.get_by_role("link", name="Predict").first.click()
    upload = page.locator("input[type=file]").first
    upload.wait_for(state="attached")
    out["predict_page_s"] = time.perf_counter() - t0
    upload.set_input_files(str(image))
    # The case's scan, with its Grad-CAM overlay (caption "Grad-CAM: …") on for an accepted answer, or without it
    # ("overlay off") for a referred one, such as the made-up slice: then the user's one click switches it on.
    card = page.get_by_test_id("stImage").filter(has_text="As the model sees it").first
    card.wait_for()
    out["result_s"] = time.perf_counter() - t0
    if page.get_by_test_id("stImage").filter(has_text="Grad-CAM:").count() == 0:
        page.get_by_test_id("stCheckbox").filter(has_text="Grad-CAM overlay").first.locator("label").first.click()
    page.get_by_test_id("stImage").filter(has_text="Grad-CAM:").first.wait_for()  # the overlay's caption
    out["first_prediction_s"] = time.perf_counter() - t0
    out["visit_to_prediction_s"] = time.perf_counter() - visit


def run_bench(models: list[Path], data: Path, app: bool = True, runs: int = 50) -> dict:
    test = data / "Testing" if (data / "Testing").is_dir() else data
    image = next(p for p in sorted((test / "meningioma").iterdir()) if p.suffix.lower() in (".jpg", ".png"))
    res = {"machine": machine_description(), "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%d %H:%M"), "models": [], "evaluation": {}, "training": []}
    for m in models:
        res["models"].append(bench_model(m, image, runs))
        res["evaluation"][m.stem] = bench_evaluation(m, test)
    for m in models:
        card = read_card(m)
        precision = card.training.get("config", {}).get("precision", "float32")
        res["training"].append(bench_training(card.architecture, contract=card.contract, precision=precision))
    if app:
        res["app"] = bench_app(image)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def format_bench(res: dict) -> str:
    lines = [f"brainclf benchmark — {res['machine']}, Python {res['python']}, {res['date']}", ""]
    hdr = f"{'model':<10}{'params':>10}{'load s':>8}{'decode':>9}{'preproc':>9}{'forward':>9}{'gradcam':>9}" \
          f"{'e2e':>9}{'naive fwd':>10}{'naive cam':>10}{'speedup':>9}"
    lines += ["single image, median ms (p95):", hdr]
    for r in res["models"]:
        def f(k, r=r):
            return f"{r[k]['median_ms']:.1f}"
        lines.append(f"{r['model']:<10}{r['params']:>10,}{r['load_s']:>8.2f}{f('decode'):>9}{f('preprocess'):>9}"
                     f"{f('forward'):>9}{f('gradcam'):>9}{f('end_to_end'):>9}{f('naive_forward'):>10}"
                     f"{f('naive_gradcam'):>10}{r['speedup_vs_naive']:>8.1f}x")
        lines.append(" " * 36 + "".join(f"({r[k]['p95_ms']:.1f})".rjust(9) for k in
                                        ("preprocess", "forward", "gradcam", "end_to_end")))
    lines += ["", "evaluation over a folder (decoding included):"]
    for name, e in res["evaluation"].items():
        lines.append(f"  {name}: {e['images']} images in {e['seconds']:.2f} s = {e['images_per_s']:.0f} img/s "
                     f"(model loaded); whole CLI process {e['cli_process_s']:.1f} s")
    lines += ["", "training:"]
    for t in res["training"]:
        lines.append(f"  {t['architecture']}: {t['s_per_step'] * 1000:.0f} ms/step of 32 → "
                     f"~{t['s_per_epoch_est']:.0f} s per epoch of 5,137 images")
    if res.get("app"):
        a = res["app"]
        lines += ["", f"app cold start: /_stcore/health ok after {a.get('health_s', float('nan')):.1f} s"
                  + (f", first prediction in the browser after {a['first_prediction_s']:.1f} s"
                     if "first_prediction_s" in a else "")]
    lines.append(f"peak memory (this process): {res['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)

