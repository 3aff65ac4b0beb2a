import math

import kornia
import pytest
import torch
import torch.nn as nn

from splitbrain.models import MODELS, AlexNetEncoder, SplitBrain, SplitBrainHalf, build_model
from splitbrain.models.layers import make_pool, make_strided_conv

SPLITBRAIN_MODELS = ("splitbrain_alexnet", "splitbrain_alexnet_small")
SMALL_MODELS = ("eccv16_small", "alexnet_colorization_small", "splitbrain_alexnet_small",
                "alexnet_colorization_cifar", "splitbrain_alexnet_cifar", "autoencoder_alexnet_cifar")

# name -> (input size, expected output shapes (C, h, w) per head), from the architectures:
# ECCV16 predicts at 1/4 resolution; AlexNet at 67 px: conv1 15 -> pool1 7 -> pool2 3, kept by
# the stride-1 pool5 and the padded fc6.
EXPECTED = {
    "eccv16": (64, [(313, 16, 16)]),
    "eccv16_small": (64, [(313, 16, 16)]),
    "alexnet_colorization": (67, [(313, 3, 3)]),
    "alexnet_colorization_small": (67, [(313, 3, 3)]),
    "splitbrain_alexnet": (67, [(313, 3, 3), (50, 3, 3)]),
    "splitbrain_alexnet_small": (67, [(313, 3, 3), (50, 3, 3)]),
    # The "cifar" layout: conv1 at stride 1, pool1 and pool2 halve: 32 -> 16 -> 8.
    "alexnet_colorization_cifar": (32, [(313, 8, 8)]),
    "splitbrain_alexnet_cifar": (32, [(313, 8, 8), (50, 8, 8)]),
    # Autoencoders regress L, a, b at conv5's resolution.
    "autoencoder_alexnet": (67, [(3, 3, 3)]),
    "autoencoder_alexnet_small": (67, [(3, 3, 3)]),
    "autoencoder_alexnet_cifar": (32, [(3, 8, 8)]),
}


def lab_batch(batch, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = torch.rand(batch, 1, size, size, generator=g) * 100
    ab = (torch.randn(batch, 2, size, size, generator=g) * 30).clamp(-110, 110)
    return torch.cat([L, ab], dim=1)  # (B, 3, H, W) raw Lab


def model_input(model, lab):
    """Lab for split-brain models, L alone for the colorization nets."""
    return lab if model.in_channels == 3 else lab[:, :1]


def as_list(output):
    return output if isinstance(output, list) else [output]


def first_convs(model):
    """The convolution(s) that see the input: one per sub-network."""
    if isinstance(model, SplitBrain):
        return [h.encoder.conv1[0] for h in model.halves]
    if hasattr(model, "encoder"):
        return [model.encoder.conv1[0]]
    return [model.model1[0]]


def test_models_dict_lists_every_factory():
    assert set(MODELS) == set(EXPECTED)


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="eccv16_small.*splitbrain_alexnet"):
        build_model("resnet50")


@pytest.mark.parametrize("blur", [1, 3])
@pytest.mark.parametrize("name", list(MODELS))
def test_forward_backward_shapes_and_gradients(name, blur):
    torch.manual_seed(0)
    model = build_model(name, blur=blur).train()
    size, expected = EXPECTED[name]
    outputs = as_list(model(model_input(model, lab_batch(2, size))))
    assert [tuple(o.shape) for o in outputs] == [(2, *shape) for shape in expected]
    loss = sum((o * torch.randn_like(o)).sum() for o in outputs)
    loss.backward()
    for conv in first_convs(model):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("blur", [2, 5])
@pytest.mark.parametrize("name", SMALL_MODELS)
def test_every_filter_size_keeps_the_output_shapes(name, blur):
    size, expected = EXPECTED[name]
    with torch.no_grad():
        outputs = as_list(build_model(name, blur=blur).eval()(
            model_input(build_model(name), lab_batch(1, size))))
    assert [tuple(o.shape) for o in outputs] == [(1, *shape) for shape in expected]


@pytest.mark.parametrize("name", list(MODELS))
def test_blur_sets_the_antialiasing_filter_of_every_downsampling(name):
    blurring = (kornia.filters.MaxBlurPool2D, kornia.filters.BlurPool2D)
    plain = build_model(name)
    assert not any(isinstance(m, blurring) for m in plain.modules())
    for size in (2, 3, 5):
        found = [m for m in build_model(name, blur=size).modules() if isinstance(m, blurring)]
        # ECCV16: three strided convolutions; AlexNets: pool1 and pool2 (of each half).
        halves = 2 if name.startswith("splitbrain") else 1
        assert len(found) == (3 if name.startswith("eccv16") else 2 * halves)
        # The filter is the binomial one of that size (outer product of Pascal's row).
        row = torch.tensor([math.comb(size - 1, i) for i in range(size)], dtype=torch.float32)
        want = torch.outer(row, row) / row.sum() ** 2
        for module in found:
            assert torch.allclose(module.kernel.reshape(-1, size, size)[0], want)


# Total stride at a feature tap: a circular shift of the input by it must shift the tap by
# exactly one cell wherever neither map's receptive field reaches the border or the wrap.
# (tap, stride, input size, cells left out at each edge)
TOTAL_STRIDE = {"eccv16_small": ("conv3", 8, 224, 6),
                "alexnet_colorization_small": ("conv5", 16, 387, 6),
                "splitbrain_alexnet_small": ("conv5", 16, 387, 6),
                "splitbrain_alexnet_cifar": ("conv5", 4, 128, 12)}


@pytest.mark.parametrize("blur", [1, 2, 3, 5])
@pytest.mark.parametrize("name", list(TOTAL_STRIDE))
def test_a_shift_by_the_total_stride_shifts_the_features_by_one_cell(name, blur):
    layer, stride, size, m = TOTAL_STRIDE[name]
    torch.manual_seed(0)
    model = build_model(name, blur=blur).eval()
    x = model_input(model, lab_batch(1, size))
    shifted = torch.roll(x, shifts=(stride, stride), dims=(-2, -1))
    with torch.no_grad():
        a = model.forward_features(x, [layer])[layer]
        b = model.forward_features(shifted, [layer])[layer]
    # m: cells whose receptive field reaches the border or the wrapped strip are left out
    assert a.shape[-1] > 2 * m + 2
    inner_a, inner_b = a[..., m:-m - 1, m:-m - 1], b[..., m + 1:-m, m + 1:-m]
    assert inner_a.abs().max() > 0
    assert torch.allclose(inner_b, inner_a, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_models_record_their_constructor_conventions(name):
    model = build_model(name, l_norm="center")
    assert model.l_norm == "center"
    assert isinstance(model.num_classes, (int, list))
    with pytest.raises(ValueError, match="unit"):
        build_model(name, l_norm="caffe")
    with pytest.raises(ValueError, match=r"model\.blur.*1, 2, 3, 5"):
        build_model(name, blur=4)


@pytest.mark.parametrize("l_norm", ["unit", "center"])
@pytest.mark.parametrize("name", ["eccv16_small", "alexnet_colorization_small"])
def test_colorization_nets_normalise_raw_L(name, l_norm):
    model = build_model(name, l_norm=l_norm).eval()
    seen = {}
    first_convs(model)[0].register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    L = lab_batch(1, 64)[:, :1]
    with torch.no_grad():
        model(L)
    shift, scale = {"unit": (50, 100), "center": (50, 1)}[l_norm]
    torch.testing.assert_close(seen["x"], (L - shift) / scale)


def test_colorization_nets_reject_a_lab_input():
    lab = lab_batch(1, 64)
    for name in ("eccv16_small", "alexnet_colorization_small"):
        with pytest.raises(ValueError, match="L alone"):
            build_model(name)(lab)


# --- feature taps ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_unknown_feature_layer_lists_the_valid_ones(name):
    model = build_model(name)
    with pytest.raises(ValueError, match="conv1, conv2, conv3, conv4, conv5"):
        model.forward_features(model_input(model, lab_batch(1, 67)), ["conv9"])


def later_modules(model):
    """Modules that must not run when only conv1 is requested."""
    if isinstance(model, SplitBrain):
        return [m for h in model.halves for m in (h.encoder.conv2, h.encoder.conv5, h.head)]
    if hasattr(model, "encoder"):
        return [model.encoder.conv2, model.encoder.conv5, model.head]
    return [model.model2, model.model5, model.model8]


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_features_stops_after_the_last_requested_layer(name):
    model = build_model(name).eval()
    ran = []
    for module in later_modules(model):
        module.register_forward_hook(lambda m, args, out: ran.append(m))
    x = model_input(model, lab_batch(1, 67))
    with torch.no_grad():
        feats = model.forward_features(x, ["conv1"])
        assert list(feats) == ["conv1"] and not ran
        feats = model.forward_features(x, "conv5")
    assert list(feats) == ["conv5"] and ran


@pytest.mark.parametrize("name", list(MODELS))
def test_feature_channels_match_the_taps(name):
    model = build_model(name).eval()
    with torch.no_grad():
        feats = model.forward_features(model_input(model, lab_batch(1, 67)), model.feature_layers)
    assert list(feats) == list(model.feature_layers)
    assert {k: v.shape[1] for k, v in feats.items()} == model.feature_channels


def test_feature_taps_come_back_in_the_requested_order():
    model = build_model("alexnet_colorization_small").eval()
    with torch.no_grad():
        feats = model.forward_features(lab_batch(1, 67)[:, :1], ["conv3", "conv1"])
    assert list(feats) == ["conv3", "conv1"]


def test_alexnet_feature_maps_at_227_are_the_classic_ones():
    encoder = AlexNetEncoder(in_channels=1).eval()
    with torch.no_grad():
        feats = encoder.forward_features(torch.randn(1, 1, 227, 227))
    shapes = {k: tuple(v.shape[1:]) for k, v in feats.items()}
    assert shapes == {"conv1": (96, 55, 55), "conv2": (256, 27, 27), "conv3": (384, 13, 13),
                      "conv4": (384, 13, 13), "conv5": (256, 13, 13)}


def test_alexnet_encoder_norm_choices():
    lrn = AlexNetEncoder(norm="lrn")
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in lrn.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in lrn.modules())
    bn = AlexNetEncoder(norm="bn")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 5
    with pytest.raises(ValueError, match="bn, lrn, none"):
        AlexNetEncoder(norm="gn")


@pytest.mark.parametrize("norm", ["lrn", "none"])
def test_alexnet_without_batchnorm_runs(norm):
    model = build_model("alexnet_colorization_small", norm=norm)
    assert model(lab_batch(1, 67)[:, :1]).shape == (1, 313, 3, 3)


def test_alexnet_colorization_predicts_at_conv5_resolution():
    model = build_model("alexnet_colorization_small").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 227, 227) * 100).shape == (1, 313, 13, 13)
        assert model(torch.rand(1, 1, 180, 180) * 100).shape == (1, 313, 10, 10)


# --- ECCV16 and the official release ------------------------------------------------------------

def release_state_shapes():
    """Key -> shape of the official ``colorization_release_v2`` weights, from the published layout.

    Blocks 1-7 are [Conv 3x3, ReLU] * n + [BatchNorm]; block 8 is a 4x4 transposed conv, two
    3x3 convs and the 1x1 conv to 313 bins, each followed by a ReLU but the last.
    """
    block_channels = {1: [1, 64, 64], 2: [64, 128, 128], 3: [128, 256, 256, 256],
                      4: [256, 512, 512, 512], 5: [512] * 4, 6: [512] * 4, 7: [512] * 4}
    shapes = {}
    for block, chans in block_channels.items():
        for i in range(len(chans) - 1):
            shapes[f"model{block}.{2 * i}.weight"] = (chans[i + 1], chans[i], 3, 3)
            shapes[f"model{block}.{2 * i}.bias"] = (chans[i + 1],)
        bn = 2 * (len(chans) - 1)
        for buffer in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"model{block}.{bn}.{buffer}"] = (chans[-1],)
    shapes["model8.0.weight"] = (512, 256, 4, 4)  # ConvTranspose2d stores (in, out, kH, kW)
    shapes["model8.0.bias"] = (256,)
    for i in (2, 4):
        shapes[f"model8.{i}.weight"] = (256, 256, 3, 3)
        shapes[f"model8.{i}.bias"] = (256,)
    shapes["model8.6.weight"] = (313, 256, 1, 1)
    shapes["model8.6.bias"] = (313,)
    return shapes  # the release also has model_out.weight (2, 313, 1, 1): not in our network


def test_eccv16_state_dict_matches_the_official_release():
    model = build_model("eccv16")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}
    assert ours == release_state_shapes()
    assert 32.0e6 < sum(p.numel() for p in model.parameters()) < 32.5e6


def test_eccv16_loads_release_weights_without_renaming():
    g = torch.Generator().manual_seed(0)
    release = {k: torch.randn(s, generator=g) for k, s in release_state_shapes().items()}
    model = build_model("eccv16")
    model.load_state_dict(release)  # strict; the release has no num_batches_tracked
    torch.testing.assert_close(model.model8[6].weight, release["model8.6.weight"])


def test_eccv16_strides_and_dilations_are_the_published_ones():
    model = build_model("eccv16")
    strided = {n for n, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.stride != (1, 1)}
    assert strided == {"model1.2", "model2.2", "model3.4", "model8.0"}
    dilated = {n for n, m in model.named_modules()
               if isinstance(m, nn.Conv2d) and m.dilation == (2, 2) and m.padding == (2, 2)}
    assert dilated == {f"model{b}.{i}" for b in (5, 6) for i in (0, 2, 4)}


def test_eccv16_regression_head_and_odd_sizes():
    model = build_model("eccv16_small", num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 96, 96) * 100).shape == (1, 2, 24, 24)
        # Every stride-2 step rounds up: 100 -> 50 -> 25 -> 13, then x2.
        assert model(torch.rand(1, 1, 100, 100) * 100).shape == (1, 2, 26, 26)


def test_eccv16_antialiased_keeps_output_size():
    model = build_model("eccv16_small", blur=3).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 100, 100) * 100).shape == (1, 313, 26, 26)


# --- downsampling ----------------------------------------------------------------------------

@pytest.mark.parametrize("blur", [2, 3, 5])
@pytest.mark.parametrize("size", [8, 13, 27, 54, 55])
@pytest.mark.parametrize("padding", [0, 1])
def test_maxblur_pool_matches_max_pool_sizes(size, padding, blur):
    x = torch.randn(1, 4, size, size)
    plain = make_pool(1, 3, 2, padding)(x)
    blurred = make_pool(blur, 3, 2, padding)(x)
    assert blurred.shape == plain.shape
    assert torch.isfinite(blurred).all()


def test_maxblur_at_stride_one_is_plain_max_pooling():
    assert isinstance(make_pool(3, 3, 1, 1), nn.MaxPool2d)


@pytest.mark.parametrize("blur", [2, 3, 5])
@pytest.mark.parametrize("size", [47, 48])
def test_antialiased_strided_conv_keeps_the_size(size, blur):
    x = torch.randn(1, 3, size, size)
    plain = nn.Sequential(*make_strided_conv(1, 3, 8, 2))(x)
    blurred = nn.Sequential(*make_strided_conv(blur, 3, 8, 2))(x)
    assert blurred.shape == plain.shape == (1, 8, (size + 1) // 2, (size + 1) // 2)


# --- split-brain -----------------------------------------------------------------------------

def test_splitbrain_heads_and_concatenated_features_at_227():
    model = build_model("splitbrain_alexnet").eval()
    with torch.no_grad():
        l2ab, ab2l = model(lab_batch(1, 227))
        feats = model.forward_features(lab_batch(1, 227), model.feature_layers)
    assert l2ab.shape == (1, 313, 13, 13) and ab2l.shape == (1, 50, 13, 13)
    shapes = {k: tuple(v.shape[1:]) for k, v in feats.items()}
    assert shapes == {"conv1": (96, 55, 55), "conv2": (256, 27, 27), "conv3": (384, 13, 13),
                      "conv4": (384, 13, 13), "conv5": (256, 13, 13),
                      "fc6": (4096, 13, 13), "fc7": (4096, 13, 13)}
    half = model.half("l2ab")
    assert half.feature_channels == {"conv1": 48, "conv2": 128, "conv3": 192, "conv4": 192,
                                     "conv5": 128, "fc6": 2048, "fc7": 2048}


@pytest.mark.parametrize("padding, size", [("alexnet", 10), ("official", 12)])
def test_splitbrain_output_resolution_at_180(padding, size):
    model = build_model("splitbrain_alexnet_small", padding=padding).eval()
    with torch.no_grad():
        outputs = model(lab_batch(1, 180))
    assert [tuple(o.shape) for o in outputs] == [(1, 313, size, size), (1, 50, size, size)]


def test_splitbrain_features_are_the_halves_concatenated():
    model = build_model("splitbrain_alexnet_small").eval()
    lab = lab_batch(2, 67)
    with torch.no_grad():
        joint = model.forward_features(lab, ["conv2", "fc7"])
        parts = [h.forward_features(lab, ["conv2", "fc7"]) for h in model.halves]
    for name in ("conv2", "fc7"):
        torch.testing.assert_close(joint[name], torch.cat([p[name] for p in parts], dim=1))


@pytest.mark.parametrize("l_norm", ["unit", "center"])
def test_each_half_sees_its_own_channels_normalised(l_norm):
    model = build_model("splitbrain_alexnet_small", l_norm=l_norm).eval()
    seen = []
    for conv in first_convs(model):
        conv.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    lab = lab_batch(1, 67)
    with torch.no_grad():
        model(lab)
    L_shift, L_scale = {"unit": (50, 100), "center": (50, 1)}[l_norm]
    torch.testing.assert_close(seen[0], (lab[:, :1] - L_shift) / L_scale)
    torch.testing.assert_close(seen[1], lab[:, 1:] / 110)


def test_regression_heads_output_one_value_per_target_channel():
    model = build_model("splitbrain_alexnet_small", heads=["reg", "reg"]).eval()
    assert [h.head_type for h in model.halves] == ["reg", "reg"]
    with torch.no_grad():
        outputs = model(lab_batch(1, 67))
    assert [o.shape[1] for o in outputs] == [2, 1]


def test_a_generic_split_with_custom_normalisation():
    # e.g. RGB + depth: RGB predicts depth (regression), depth predicts RGB over 10 bins.
    halves = [{"inputs": [0, 1, 2], "targets": [3], "head": "reg"},
              {"inputs": [3], "targets": [0, 1, 2], "num_classes": 10}]
    model = build_model("splitbrain_alexnet_small", halves=halves, in_channels=4,
                        channel_shift=[0.5, 0.5, 0.5, 2.0], channel_scale=[0.25, 0.25, 0.25, 1.0])
    outputs = model(torch.rand(2, 4, 67, 67))
    assert [tuple(o.shape) for o in outputs] == [(2, 1, 3, 3), (2, 10, 3, 3)]
    assert model.forward_features(torch.rand(1, 4, 67, 67), "conv1")["conv1"].shape[1] == 24
    with pytest.raises(ValueError, match="channel_shift and channel_scale"):
        build_model("splitbrain_alexnet_small", halves=halves, in_channels=4)


def test_the_lab_autoencoder_is_a_one_half_split():
    halves = [{"inputs": [0, 1, 2], "targets": [0, 1, 2], "head": "reg"}]
    model = build_model("splitbrain_alexnet_small", halves=halves)
    (out,) = model(lab_batch(1, 67))
    assert out.shape == (1, 3, 3, 3)


@pytest.mark.parametrize("halves, message", [
    ([{"inputs": [0], "targets": [1, 2], "num_classes": 313},
      {"inputs": [0, 1, 2], "targets": [0], "num_classes": 50}], "channel 0 is seen by halves 0 and 1"),
    ([{"inputs": [0], "targets": [1, 2], "num_classes": 313},
      {"inputs": [1], "targets": [0], "num_classes": 50}], r"channel\(s\) \[2\] are seen by no half"),
    ([{"inputs": [0], "targets": [], "num_classes": 313},
      {"inputs": [1, 2], "targets": [0], "num_classes": 50}], "half 0: .*non-empty 'targets'"),
    ([{"inputs": [0], "targets": [1, 2], "num_classes": 313},
      {"inputs": [1, 2, 3], "targets": [0], "num_classes": 50}], r"half 1: .*\[3\] outside 0..2"),
    ([{"inputs": [0], "targets": [1, 2]},
      {"inputs": [1, 2], "targets": [0], "num_classes": 50}], "half 0: a 'cl' head needs"),
    ([{"inputs": [0], "targets": [1, 2], "num_classes": 313, "head": "reg"},
      {"inputs": [1, 2], "targets": [0], "num_classes": 50}], "num_classes must be 2"),
    ([{"inputs": [0], "targets": [1, 2], "num_classes": 313, "loss": "cl"},
      {"inputs": [1, 2], "targets": [0], "num_classes": 50}], r"unknown key\(s\) \['loss'\]"),
    ([], "at least one half"),
])
def test_split_validation_says_what_is_wrong(halves, message):
    with pytest.raises(ValueError, match=message):
        SplitBrain(halves, widths=(4, 4, 4, 4, 4), fc_width=4)


def test_a_half_alone_is_built_from_its_name_and_trains_on_lab():
    half = build_model("splitbrain_alexnet_small", half="ab2l")
    assert isinstance(half, SplitBrainHalf)
    assert (half.inputs, half.targets, half.num_classes) == ([1, 2], [0], 50)
    assert half(lab_batch(2, 67)).shape == (2, 50, 3, 3)
    with pytest.raises(ValueError, match="both, l2ab, ab2l"):
        build_model("splitbrain_alexnet_small", half="l2rgb")


def test_joined_halves_keep_their_weights():
    l2ab = build_model("splitbrain_alexnet_small", half="l2ab").eval()
    ab2l = build_model("splitbrain_alexnet_small", half="ab2l").eval()
    model = SplitBrain.from_halves(l2ab, ab2l).eval()
    assert model.half("l2ab") is l2ab and model.half(1) is ab2l
    assert model.num_classes == [313, 50] and model.feature_channels["conv5"] == 64
    assert all(p.device.type == "cpu" for p in model.parameters())
    lab = lab_batch(1, 67)
    with torch.no_grad():
        joint = model(lab)
        torch.testing.assert_close(joint[0], l2ab(lab))
        torch.testing.assert_close(joint[1], ab2l(lab))


def test_from_halves_rejects_halves_that_do_not_fit():
    l2ab_small = build_model("splitbrain_alexnet_small", half="l2ab")
    ab2l_full = build_model("splitbrain_alexnet", half="ab2l")
    with pytest.raises(ValueError, match="half 1 does not match half 0.*widths"):
        SplitBrain.from_halves(l2ab_small, ab2l_full)
    with pytest.raises(ValueError, match="seen by halves 0 and 1"):
        SplitBrain.from_halves(l2ab_small, build_model("splitbrain_alexnet_small", half="l2ab"))
    ab2l_center = build_model("splitbrain_alexnet_small", half="ab2l", l_norm="center")
    with pytest.raises(ValueError, match="l_norm"):
        SplitBrain.from_halves(l2ab_small, ab2l_center)


def test_full_width_halves_are_as_wide_as_the_single_network():
    # A cross-channel encoder trained alone (ab -> L) at width "full" has the widths of the
    # colorization net (L -> ab), so the study's rows compare features of one size.
    alone = build_model("splitbrain_alexnet_cifar", half="ab2l", width="full")
    single = build_model("alexnet_colorization_cifar")
    assert alone.feature_channels == single.feature_channels
    joined = build_model("splitbrain_alexnet_cifar")
    assert joined.feature_channels == {k: v for k, v in single.feature_channels.items()}
    assert all(h.feature_channels["conv3"] == single.feature_channels["conv3"] // 2
               for h in joined.halves)
    with pytest.raises(ValueError, match="width.*half.*full"):
        build_model("splitbrain_alexnet_cifar", width="double")


def test_the_autoencoder_reconstructs_all_of_lab_from_all_of_lab():
    from splitbrain.models import is_autoencoder
    model = build_model("autoencoder_alexnet_cifar")
    assert model.spec == {"inputs": [0, 1, 2], "targets": [0, 1, 2], "num_classes": 3,
                          "head": "reg"}
    assert model.feature_channels == build_model("alexnet_colorization_cifar").feature_channels
    assert is_autoencoder(model)
    assert not is_autoencoder(build_model("splitbrain_alexnet_cifar", half="l2ab"))
    assert not is_autoencoder(build_model("alexnet_colorization_cifar"))
