import numpy as np
import torch

from training.data import augment
from training.data.phantoms import phantom


def _batch(n=6):
    rng = np.random.default_rng(0)
    return torch.tensor(np.stack([phantom(rng, "Pneumonia", 96)[0] for _ in range(n)]))[:, None]


def test_parameters_depend_only_on_the_seed_and_harmonize_keeps_the_base_stream():
    base = augment.draw_params(augment.AugmentConfig(), 50, torch.Generator().manual_seed(3))
    again = augment.draw_params(augment.AugmentConfig(), 50, torch.Generator().manual_seed(3))
    harmonized = augment.draw_params(augment.AugmentConfig(harmonize=True), 50, torch.Generator().manual_seed(3))
    assert torch.equal(base, again)
    assert harmonized.shape == (50, len(augment.PARAMS) + len(augment.HARMONIZE))
    assert torch.equal(harmonized[:, : len(augment.PARAMS)], base)
    down, blur, noise, quality = harmonized[:, 8:12].T
    assert ((down == 1) | ((down >= 0.35) & (down < 1))).all() and (down < 1).any() and (down == 1).any()
    assert ((quality == 0) | ((quality >= 30) & (quality <= 95))).all() and (quality > 0).any()
    assert (blur >= 0).all() and (noise >= 0).all()


def test_each_degradation_changes_the_image_and_is_reproducible():
    image = _batch(1)[0].float()
    off = torch.tensor([1.0, 0, 0, 0, 7])
    assert torch.equal(augment.degrade(image, off), image)
    for column, value in ((0, 0.4), (1, 1.0), (2, 3.0), (3, 30.0)):
        p = off.clone()
        p[column] = value
        out = augment.degrade(image, p)
        assert out.shape == image.shape and 0 <= out.min() and out.max() <= 255
        assert (out - image).abs().mean() > 0.1, column
        assert torch.equal(out, augment.degrade(image, p))  # same parameters (and noise seed), same pixels
    blurred = augment.degrade(image, torch.tensor([1.0, 1.0, 0, 0, 0]))
    assert blurred.diff(dim=-1).abs().mean() < image.diff(dim=-1).abs().mean()  # blur removes fine detail


def test_apply_with_and_without_harmonisation():
    images = _batch()
    params = augment.draw_params(augment.AugmentConfig(harmonize=True), len(images), torch.Generator().manual_seed(1))
    plain = augment.apply(images, params[:, : len(augment.PARAMS)])
    harmonized = augment.apply(images, params)
    assert plain.shape == harmonized.shape == images.shape
    degraded = (params[:, 8] < 1) | (params[:, 9] > 0.05) | (params[:, 10] > 0) | (params[:, 11] > 0)
    changed = (plain - harmonized).abs().flatten(1).amax(1) > 0
    assert torch.equal(changed, degraded)


def test_style_columns_come_last_and_keep_the_other_streams():
    harmonized = augment.draw_params(augment.AugmentConfig(harmonize=True), 50, torch.Generator().manual_seed(3))
    config = augment.AugmentConfig(harmonize=True, style=True)
    styled = augment.draw_params(config, 50, torch.Generator().manual_seed(3))
    assert styled.shape[1] == len(augment.columns(config)) == len(augment.PARAMS) + 5 + 4
    assert torch.equal(styled[:, : harmonized.shape[1]], harmonized)
    sharpen, local, field, text = styled[:, -4:].T
    assert (sharpen >= 0).all() and (sharpen <= 1.5).all() and (sharpen == 0).any() and (sharpen > 0).any()
    assert (local >= 0).all() and (local <= 0.8).all()
    assert ((field >= 1 / 1.2 - 1e-6) & (field <= 1.2 + 1e-6)).all() and (field != 1).any()
    assert (text == text.round()).all() and (text == 0).any() and (text > 0).any()


def test_each_style_change_does_what_it_says():
    image = _batch(1)[0].float()
    off = torch.tensor([0.0, 0.0, 1.0, 0.0])
    assert torch.equal(augment.restyle(image, off), image)
    sharpened = augment.restyle(image, torch.tensor([1.5, 0.0, 1.0, 0.0]))
    assert sharpened.diff(dim=-1).abs().mean() > 1.3 * image.diff(dim=-1).abs().mean()  # edges enhanced
    wider = augment.restyle(image, torch.tensor([0.0, 0.0, 0.8, 0.0]))
    assert wider[0, :5].max() == 0 and wider[0, :, :5].max() == 0 and image[0, :5].max() > 0  # a black border
    tighter = augment.restyle(image, torch.tensor([0.0, 0.0, 1.25, 0.0]))
    assert (tighter - image).abs().mean() > 1
    texted = augment.restyle(image, torch.tensor([0.0, 0.0, 1.0, 12345.0]))
    assert ((texted - image) > 60).sum() > 5  # bright burned-in marks
    assert torch.equal(texted, augment.restyle(image, torch.tensor([0.0, 0.0, 1.0, 12345.0])))  # reproducible
    local = augment.restyle(image, torch.tensor([0.0, 0.8, 1.0, 0.0]))
    assert local.std() > image.std()  # local contrast spreads the grey levels


def test_apply_with_a_config_reads_the_style_columns():
    images = _batch()
    config = augment.AugmentConfig(harmonize=True, style=True)
    params = augment.draw_params(config, len(images), torch.Generator().manual_seed(1))
    harmonized = augment.apply(images, params[:, : len(augment.PARAMS) + 5])
    styled = augment.apply(images, params, config)
    untouched = (params[:, -4] == 0) & (params[:, -3] == 0) & (params[:, -2] == 1) & (params[:, -1] == 0)
    changed = (harmonized - styled).abs().flatten(1).amax(1) > 0
    assert torch.equal(changed, ~untouched)
