"""Shared fixtures: a small synthetic Kaggle-layout dataset and a smoke model trained on it.

Every image is generated here; no test reads the real dataset.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
# Centre of the bright disc per class (x, y) on a 64x64 canvas: each class looks different.
DISC_CENTRES = {"glioma": (18, 18), "meningioma": (46, 18), "notumor": None, "pituitary": (32, 46)}
N_TRAIN, N_TEST, SIZE = 12, 3, 64


def synthetic_image(cls: str, rng: np.random.Generator, size: int = SIZE) -> Image.Image:
    """A 'slice': a random smooth background (so no two images are near duplicates), a bright disc at a
    class-specific position (none for notumor) and pixel noise. Grayscale, size x size."""
    coarse = rng.uniform(0, 110, (6, 6)).astype(np.uint8)
    background = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), np.float64)
    yy, xx = np.mgrid[0:size, 0:size]
    img = background + rng.normal(0, 12, (size, size))
    centre = DISC_CENTRES[cls]
    if centre is not None:
        cx, cy = centre[0] + rng.integers(-2, 3), centre[1] + rng.integers(-2, 3)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 <= 9 ** 2] = 235
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L")


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def write_dataset(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("Training", n_train), ("Testing", n_test)):
        for cls in CLASSES:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                synthetic_image(cls, rng).save(folder / f"{cls[:2]}_{split[:2].lower()}_{i:02d}.png")
    return root


@pytest.fixture(scope="session", autouse=True)
def neutral_server_settings(tmp_path_factory):
    """Tests never read a developer's own brainclf.toml or $BRAINCLF_SETTINGS (roles there would switch the app
    out of local mode): an empty settings file, unless a test points BRAINCLF_SETTINGS elsewhere."""
    empty = tmp_path_factory.mktemp("settings") / "brainclf.toml"
    empty.write_text("")
    before = os.environ.get("BRAINCLF_SETTINGS")
    os.environ["BRAINCLF_SETTINGS"] = str(empty)
    yield empty
    if before is None:
        os.environ.pop("BRAINCLF_SETTINGS", None)
    else:
        os.environ["BRAINCLF_SETTINGS"] = before


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """ROOT/Training/<class>/*.png (12 per class) and ROOT/Testing/<class>/*.png (3 per class)."""
    return write_dataset(tmp_path_factory.mktemp("synth") / "brain-mri")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, synthetic_dataset):
    """(model path, run dir, models dir) of a 1-epoch compact_cnn trained on the synthetic dataset."""
    from brainclf.training import TrainConfig, TrainRequest, train

    base = tmp_path_factory.mktemp("smoke")
    models_dir, run_dir = base / "models", base / "run"
    out = train(TrainRequest(TrainConfig(architecture="compact_cnn", image_size=32, epochs=1, batch_size=8,
                            early_stopping_patience=5),
                data=synthetic_dataset, name="smoke", models_dir=models_dir, run_dir=run_dir))
    return Path(out), run_dir, models_dir


@pytest.fixture(scope="session")
def smoke_model(smoke_run) -> Path:
    """Path to smoke.keras (with smoke.json beside it)."""
    return smoke_run[0]


@pytest.fixture(scope="session")
def smoke_predictor(smoke_model):
    from brainclf.inference import Predictor

    return Predictor.load(smoke_model)


@pytest.fixture
def make_image():
    """make_image(cls='glioma', seed=0) → a fresh synthetic PIL image."""
    def make(cls: str = "glioma", seed: int = 0) -> Image.Image:
        return synthetic_image(cls, np.random.default_rng(seed))

    return make


@pytest.fixture
def png_bytes():
    """png_bytes(img, fmt='PNG', **save_kwargs) → encoded bytes."""
    return encode


def copy_model(model: Path, folder: Path, name: str) -> Path:
    """A copy of a bundled-style model (.keras and its card) as FOLDER/NAME.keras."""
    from brainclf.model import card_path

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / f"{name}.keras")
    shutil.copy(card_path(model), card_path(folder / f"{name}.keras"))
    return folder / f"{name}.keras"


def require_real_data(path: Path | None, what: str) -> Path:
    """The real-data gate, in one place: skip on a developer machine without the data, but fail in CI
    (BRAINCLF_REQUIRE_REAL_DATA=1), where a missing dataset must never pass as a silent skip."""
    if path is None or not Path(path).is_dir():
        msg = f"{what} not found ({path})"
        if os.environ.get("BRAINCLF_REQUIRE_REAL_DATA") == "1":
            pytest.fail(msg + " but BRAINCLF_REQUIRE_REAL_DATA=1")
        pytest.skip(msg)
    return Path(path)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """$BRAINCLF_DATA: the Kaggle dataset (Training/, Testing/)."""
    value = os.environ.get("BRAINCLF_DATA")
    return require_real_data(Path(value) if value else None, "real dataset ($BRAINCLF_DATA)")


@pytest.fixture(scope="session")
def external_data(real_data) -> Path:
    """The external-radiopaedia folder beside $BRAINCLF_DATA (the layout of ../shared/data)."""
    return require_real_data(real_data.parent / "external-radiopaedia", "external dataset")


CHROMIUM = "/usr/bin/chromium"
# How long a browser test waits for anything (an element, a navigation, an `expect`): Playwright's 5 s default
# for `expect` failed on a busy 2-core machine (issue #25: the Evaluation page's "Confusion matrix" heading
# took longer). A test waits for what it needs to see, so a long limit costs nothing when the app is quick.
BROWSER_WAIT_MS = 90_000
SERVER_START_S = 120  # for the server's own readiness (brainclf.serving.serve.wait_healthy polls /_stcore/health)


def new_page(owner, **kwargs):
    """A page of `owner` (a Browser, with new_page's options, or a BrowserContext) waiting BROWSER_WAIT_MS for
    elements and navigations."""
    page = owner.new_page(**kwargs)
    page.set_default_timeout(BROWSER_WAIT_MS)
    page.set_default_navigation_timeout(BROWSER_WAIT_MS)
    return page


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through Playwright (the browser tests; `make test` installs chromium); every
    `expect` waits up to BROWSER_WAIT_MS."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=BROWSER_WAIT_MS)

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def confident_testing_row(card: dict, cls: str, above: float = 0.99) -> dict:
    """A Testing slice of `cls` the card records as right and confident with and without flip TTA (so the
    refer rule accepts it and the Predict page shows its Grad-CAM overlay by default)."""
    tta = {r["path"]: max(r["probs"]) for r in card.get("test_predictions_tta") or []}
    return next(r for r in card["test_predictions"] if r["true"] == r["pred"] == cls
                and min(max(r["probs"]), tta.get(r["path"], 1.0)) >= above)


def show_overlay(page, index: int = 0) -> None:
    """Switch on the Predict page's Grad-CAM overlay of the `index`-th case (off by default unless accepted)."""
    toggle = page.get_by_test_id("stCheckbox").filter(has_text="Grad-CAM overlay").nth(index)
    toggle.wait_for()
    if not toggle.locator("input").is_checked():
        toggle.locator("label").first.click()
