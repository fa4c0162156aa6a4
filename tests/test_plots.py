"""cae.plots: figures are written as whole PNG files of the expected size, showing the images given."""

import numpy as np
import pytest
from PIL import Image

from cae.plots import image_grid, loss_curve


def _png(path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("epochs", [1, 12])
def test_loss_curve_is_one_png_of_about_its_figure_size(tmp_path, epochs):
    history = {
        "train_loss": list(np.geomspace(0.05, 0.004, epochs)),
        "val_loss": list(np.geomspace(0.04, 0.005, epochs)),
    }
    path = loss_curve(history, tmp_path / "loss_curve.png", "reference, 12 epochs")
    assert path == tmp_path / "loss_curve.png"
    height, width, _ = _png(path).shape
    assert 500 < width < 800 and 300 < height < 520  # 6.4 × 4 in at 110 dpi, trimmed to its content
    assert [p.name for p in tmp_path.iterdir()] == ["loss_curve.png"]  # written atomically: no temp file left


def test_image_grid_shows_colour_and_gray_rows(tmp_path):
    red = np.zeros((4, 32, 32, 3), np.float32)
    red[..., 0] = 1.0
    gray = np.full((4, 32, 32, 1), 0.5, np.float32)  # a 1-channel row (the model's input) is drawn in gray
    pixels = _png(image_grid([("target", red), ("input", gray)], tmp_path / "grid.png", "grid", list("abcd")))
    is_red = (pixels[..., 0] > 240) & (pixels[..., 1] < 15) & (pixels[..., 2] < 15)
    is_mid_gray = (np.abs(pixels.astype(int) - 128) <= 2).all(axis=-1)
    assert is_red.sum() > 4 * 20 * 20 and is_mid_gray.sum() > 4 * 20 * 20  # four images of each, ~30 px wide


def test_image_grid_grows_with_its_rows_and_columns(tmp_path):
    images = np.random.default_rng(0).random((8, 32, 32, 3)).astype(np.float32)
    small = _png(image_grid([("a", images[:4])], tmp_path / "small.png", "small"))
    wide = _png(image_grid([("a", images)], tmp_path / "wide.png", "wide"))
    tall = _png(image_grid([("a", images[:4]), ("b", images[4:]), ("c", images[:4])], tmp_path / "tall.png", "tall"))
    assert wide.shape[1] > 1.6 * small.shape[1] and abs(wide.shape[0] - small.shape[0]) < 20
    assert tall.shape[0] > 2 * small.shape[0] and abs(tall.shape[1] - small.shape[1]) < 20


@pytest.mark.parametrize(("last", "ticks"), [(1, [1]), (3, [1, 2, 3])])
def test_few_epochs_get_whole_epoch_ticks(last, ticks):
    from cae.plots import epoch_axis, plt

    fig, ax = plt.subplots()
    ax.plot(range(1, last + 1), np.linspace(1, 2, last), "o")
    epoch_axis(ax, last)
    assert list(ax.get_xticks()) == ticks
    plt.close(fig)
