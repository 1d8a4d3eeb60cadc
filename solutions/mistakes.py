"""Plausible wrong answers to the exercises, each with words its check's hint must contain.

``MISTAKES["nb01.conv_params"]`` is a list of ``(wrong_answer, words)``; tests/test_exercises.py runs
every one through its check and asserts that it fails with a hint containing ``words``. Each wrong
answer is the reference solution with one typical mistake.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# Notebook 1 ---------------------------------------------------------------------------------------

def conv_params_no_bias(in_channels, out_channels, kernel, bias=True):
    return out_channels * in_channels * kernel * kernel


def conv_params_flat(in_channels, out_channels, kernel, bias=True):
    return out_channels * (kernel * kernel + 1)


def stack_no_floor(n, layers):
    for k, p, s in layers:
        n = (n + 2 * p - k) / s + 1
    return n


def stack_one_side(n, layers):
    for k, p, s in layers:
        n = (n + p - k) // s + 1
    return n


def stack_no_plus_one(n, layers):
    for k, p, s in layers:
        n = (n + 2 * p - k) // s
    return n


def conv2d_flipped(image, filt, stride=1, padding=0):
    image, filt = np.pad(image, padding), filt[::-1, ::-1]
    kh, kw = filt.shape
    return np.array([[np.sum(image[i:i + kh, j:j + kw] * filt) for j in range(0, image.shape[1] - kw + 1, stride)]
                     for i in range(0, image.shape[0] - kh + 1, stride)])


def conv2d_stride_ignored(image, filt, stride=1, padding=0):
    return conv2d_flipped(image, filt[::-1, ::-1], 1, padding)


def conv2d_no_padding(image, filt, stride=1, padding=0):
    return conv2d_flipped(image, filt[::-1, ::-1], stride, 0)


def learn_filter_no_zero_grad(images, responses, steps=300, lr=0.1):
    w = torch.randn(1, 1, 3, 3, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=lr)
    for _ in range(steps):
        F.mse_loss(F.conv2d(images, w, padding=1), responses).backward()
        optimizer.step()
    return w.detach()[0, 0]


def learn_filter_flipped(images, responses, steps=300, lr=0.1):
    w = torch.randn(1, 1, 3, 3, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        F.mse_loss(F.conv2d(images, w, padding=1), responses).backward()
        optimizer.step()
    return w.detach()[0, 0].flip(0, 1)


def avg_pool_sum(x, kernel):
    c = x.shape[1]
    return F.conv2d(x, torch.ones(c, 1, kernel, kernel), stride=kernel, groups=c)


def avg_pool_mixing_channels(x, kernel):
    c = x.shape[1]
    return F.conv2d(x, torch.ones(c, c, kernel, kernel) / kernel ** 2, stride=kernel)


def avg_pool_stride_one(x, kernel):
    c = x.shape[1]
    return F.conv2d(x, torch.ones(c, 1, kernel, kernel) / kernel ** 2, groups=c)


def avg_pool_library(x, kernel):
    return F.avg_pool2d(x, kernel)


# Notebook 2 ---------------------------------------------------------------------------------------

def batchnorm_unbiased(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5):
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)
    y = gamma[:, None, None] * (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + eps) + beta[:, None, None]
    return y, (1 - momentum) * running_mean + momentum * mean, (1 - momentum) * running_var + momentum * var


def batchnorm_running_biased(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5):
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    y = gamma[:, None, None] * (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + eps) + beta[:, None, None]
    return y, (1 - momentum) * running_mean + momentum * mean, (1 - momentum) * running_var + momentum * var


def batchnorm_per_image(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5):
    mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    y = gamma[:, None, None] * (x - mean) / np.sqrt(var + eps) + beta[:, None, None]
    return y, running_mean, running_var


def batchnorm_momentum_reversed(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5):
    n = x.size // x.shape[1]
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    y = gamma[:, None, None] * (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + eps) + beta[:, None, None]
    return y, momentum * running_mean + (1 - momentum) * mean, momentum * running_var + (1 - momentum) * var * n / (n - 1)


def _train(model, loader, optimizer, loss_fn, zero_grad=True, train=True, returns="mean"):
    if train:
        model.train()
    losses, sizes = [], []
    for x, y in loader:
        if zero_grad:
            optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        sizes.append(len(y))
    return {"mean": np.dot(losses, sizes) / sum(sizes), "last": losses[-1], "unweighted": np.mean(losses)}[returns]


def train_no_zero_grad(model, loader, optimizer, loss_fn):
    return _train(model, loader, optimizer, loss_fn, zero_grad=False)


def train_no_train_mode(model, loader, optimizer, loss_fn):
    return _train(model, loader, optimizer, loss_fn, train=False)


def train_last_loss(model, loader, optimizer, loss_fn):
    return _train(model, loader, optimizer, loss_fn, returns="last")


def train_unweighted(model, loader, optimizer, loss_fn):
    return _train(model, loader, optimizer, loss_fn, returns="unweighted")


def one_cycle_linear(step, total_steps, max_lr, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    initial, final = max_lr / div_factor, max_lr / div_factor / final_div_factor
    warm_end, last = pct_start * total_steps - 1, total_steps - 1
    if step <= warm_end:
        return initial + (max_lr - initial) * step / warm_end
    return max_lr + (final - max_lr) * (step - warm_end) / (last - warm_end)


def one_cycle_wrong_floor(step, total_steps, max_lr, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    initial, final = max_lr / div_factor, max_lr / final_div_factor
    warm_end, last = pct_start * total_steps - 1, total_steps - 1

    def anneal(start, end, fraction):
        return end + (start - end) / 2 * (math.cos(math.pi * fraction) + 1)

    if step <= warm_end:
        return anneal(initial, max_lr, step / warm_end)
    return anneal(max_lr, final, (step - warm_end) / (last - warm_end))


def _crop_flip(images, pad, per_image=True, high=None, mode="constant"):
    n, _, h, w = images.shape
    padded = F.pad(images, (pad,) * 4, mode=mode)
    count = n if per_image else 1
    high = 2 * pad + 1 if high is None else high
    dy, dx, flip = torch.randint(0, high, (count,)), torch.randint(0, high, (count,)), torch.rand(count) < 0.5
    out = []
    for i in range(n):
        j = i if per_image else 0
        crop = padded[i, :, dy[j]:dy[j] + h, dx[j]:dx[j] + w]
        out.append(crop.flip(-1) if flip[j] else crop)
    return torch.stack(out)


def crop_flip_one_draw(images, pad):
    return _crop_flip(images, pad, per_image=False)


def crop_flip_off_by_one(images, pad):
    return _crop_flip(images, pad, high=2 * pad)


def crop_flip_reflect(images, pad):
    return _crop_flip(images, pad, mode="reflect")


def _accuracy(model, loader, eval_mode=True, percent=False, per_batch=False):
    if eval_mode:
        model.eval()
    scores, right, total = [], 0, 0
    with torch.no_grad():
        for x, y in loader:
            correct = (model(x).argmax(1) == y).sum().item()
            scores.append(correct / len(y))
            right, total = right + correct, total + len(y)
    value = float(np.mean(scores)) if per_batch else right / total
    return 100 * value if percent else value


def accuracy_train_mode(model, loader):
    return _accuracy(model, loader, eval_mode=False)


def accuracy_percent(model, loader):
    return _accuracy(model, loader, percent=True)


def accuracy_per_batch(model, loader):
    return _accuracy(model, loader, per_batch=True)


# Notebook 3 ---------------------------------------------------------------------------------------

def topk_accuracy(logits, labels, k=5):
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(1).float().mean().item()


def topk_argmax_only(logits, labels, k=5):
    return 1 - (logits.argmax(1) == labels).float().mean().item()


def topk_smallest(logits, labels, k=5):
    top = torch.from_numpy(np.argsort(logits.numpy(), axis=1)[:, :k])
    return 1 - (top == labels[:, None]).any(1).float().mean().item()


class NoShortcutBlockWithBias(nn.Module):
    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class NoShortcutBlockNoLastReLU(NoShortcutBlockWithBias):
    def __init__(self, in_channels, width, stride=1):
        nn.Module.__init__(self)
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class NoShortcutBlockNoPadding(NoShortcutBlockNoLastReLU):
    def __init__(self, in_channels, width, stride=1):
        super().__init__(in_channels, width, stride)
        self.conv1.padding = self.conv2.padding = (0, 0)

    def forward(self, x):
        return F.relu(super().forward(x))


def needs_projection_article(in_channels, out_channels, stride):
    return in_channels != out_channels


def option_a_average(x, out_channels, stride):
    kept = F.avg_pool2d(x, stride, ceil_mode=True)
    return F.pad(kept, (0, 0, 0, 0, 0, out_channels - x.shape[1]))


def option_a_zeros_first(x, out_channels, stride):
    kept = x[:, :, ::stride, ::stride]
    return F.pad(kept, (0, 0, 0, 0, out_channels - x.shape[1], 0))


def option_a_no_stride(x, out_channels, stride):
    return F.pad(x, (0, 0, 0, 0, 0, out_channels - x.shape[1]))


def _resnet34(num_classes, in_channels, projection=True, bn=True):
    total, channels = 64 * in_channels * 49 + (128 if bn else 0), 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for _ in range(blocks):
            total += 9 * channels * width + 9 * width * width + (4 * width if bn else 0)
            if channels != width and projection:
                total += channels * width + (2 * width if bn else 0)
            channels = width
    return total + 512 * num_classes + num_classes


def resnet34_no_projection(num_classes=1000, in_channels=3):
    return _resnet34(num_classes, in_channels, projection=False)


def resnet34_no_bn(num_classes=1000, in_channels=3):
    return _resnet34(num_classes, in_channels, bn=False)


# Notebook 4 ---------------------------------------------------------------------------------------

class KerasBottleneckNoBias(nn.Module):
    def __init__(self, in_channels, width, out_channels, bias=False, shortcut_bn=False):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(in_channels, width, 1, bias=bias), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=bias), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, out_channels, 1, bias=bias), nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if in_channels != out_channels:
            conv = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
            self.shortcut = nn.Sequential(conv, nn.BatchNorm2d(out_channels)) if shortcut_bn else conv

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(out)))))
        return F.relu(out + self.shortcut(x))


class KerasBottleneckShortcutBN(KerasBottleneckNoBias):
    def __init__(self, in_channels, width, out_channels):
        super().__init__(in_channels, width, out_channels, bias=True, shortcut_bn=True)


class KerasBottleneckReLUBeforeAdd(KerasBottleneckNoBias):
    def __init__(self, in_channels, width, out_channels):
        super().__init__(in_channels, width, out_channels, bias=True)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn3(self.conv3(F.relu(self.bn2(self.conv2(out))))))
        return out + self.shortcut(x)


def keras_total_params_only(model):
    return sum(p.numel() for p in model.parameters())


def keras_total_all_buffers(model):
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


def keras_total_trainable(model):
    statistics = sum(2 * m.num_features for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))
    return sum(p.numel() for p in model.parameters() if p.requires_grad) + statistics


def global_avg_pool_sum(x):
    return x.sum(dim=(2, 3))


def global_avg_pool_keepdim(x):
    return x.mean(dim=(2, 3), keepdim=True)


def global_avg_pool_wrong_axis(x):
    return x.mean(dim=1)


def global_avg_pool_library(x):
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


def same_padding_symmetric(n, kernel, stride):
    return (kernel - 1) // 2, (kernel - 1) // 2


def same_padding_swapped(n, kernel, stride):
    total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
    return total - total // 2, total // 2


# Notebook 5 ---------------------------------------------------------------------------------------

def split_random(labels, test_fraction=0.1, seed=0):
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = round(test_fraction * len(labels))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _split(labels, test_fraction, seed, count, first=False):
    labels, rng, test = np.asarray(labels), np.random.default_rng(seed), []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = count(len(members), test_fraction)
        test.extend(members[:n_test] if first else rng.choice(members, n_test, replace=False))
    test = np.sort(np.array(test, dtype=int))
    return np.setdiff1d(np.arange(len(labels)), test), test


def split_floor(labels, test_fraction=0.1, seed=0):
    return _split(labels, test_fraction, seed, lambda n, f: 0 if n < 2 else min(max(1, int(f * n)), n - 1))


def split_first_ones(labels, test_fraction=0.1, seed=0):
    return _split(labels, test_fraction, seed, lambda n, f: 0 if n < 2 else min(max(1, round(f * n)), n - 1), True)


def split_unseeded(labels, test_fraction=0.1, seed=0):
    return _split(labels, test_fraction, None, lambda n, f: 0 if n < 2 else min(max(1, round(f * n)), n - 1))


def receptive_field_no_strides(layers):
    return 1 + sum(k - 1 for k, _ in layers)


def receptive_field_own_stride(layers):
    field, jump = 1, 1
    for k, s in layers:
        jump *= s
        field += (k - 1) * jump
    return field


def vgg_config_wide(convs_per_block):
    return [item for width, n in zip((64, 128, 256, 512, 1024), convs_per_block) for item in [width] * n + ["M"]]


def vgg_config_no_last_pool(convs_per_block):
    config = [item for width, n in zip((64, 128, 256, 512, 512), convs_per_block) for item in [width] * n + ["M"]]
    return config[:-1]


def vgg_classifier_no_bias(num_classes):
    return 25088 * 4096 + 4096 * 4096 + 4096 * num_classes


def vgg_classifier_512(num_classes):
    sizes = [512, 4096, 4096, num_classes]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def dropout_unscaled(x, p, training):
    return x * (torch.rand(x.shape) >= p) if training else x


def dropout_scaled_at_eval(x, p, training):
    return x * (torch.rand(x.shape) >= p) if training else x * (1 - p)


def dropout_keep_probability(x, p, training):
    return x * (torch.rand(x.shape) < p) / p if training else x


def dropout_library(x, p, training):
    return nn.Dropout(p).train(training)(x)


# Notebook 6 ---------------------------------------------------------------------------------------

def conv1x1_no_permute(x, weight, bias):
    n, c, h, w = x.shape
    return (x.reshape(n * h * w, c) @ weight[:, :, 0, 0].T + bias).reshape(n, -1, h, w)


def conv1x1_no_bias(x, weight, bias):
    return (x.permute(0, 2, 3, 1) @ weight[:, :, 0, 0].T).permute(0, 3, 1, 2)


def conv1x1_library(x, weight, bias):
    return F.conv2d(x, weight, bias)


def conv_macs_input_size(in_channels, out_channels, kernel, size, stride=1, padding=0):
    return size * size * out_channels * in_channels * kernel * kernel


def conv_macs_flops(in_channels, out_channels, kernel, size, stride=1, padding=0):
    out = (size + 2 * padding - kernel) // stride + 1
    return 2 * out * out * out_channels * in_channels * kernel * kernel


def _rotate_flip(images, turns, flips, direction=1, dim=-1, flip_after=False):
    out = []
    for image, k, f in zip(images, turns, flips):
        image = image.flip(dim) if f and not flip_after else image
        image = torch.rot90(image, direction * int(k), dims=(-2, -1))
        out.append(image.flip(dim) if f and flip_after else image)
    return torch.stack(out)


def rotate_flip_clockwise(images, quarter_turns, flips):
    return _rotate_flip(images, quarter_turns, flips, direction=-1)


def rotate_flip_upside_down(images, quarter_turns, flips):
    return _rotate_flip(images, quarter_turns, flips, dim=-2)


def rotate_flip_wrong_order(images, quarter_turns, flips):
    return _rotate_flip(images, quarter_turns, flips, flip_after=True)


def confusion_transposed(labels, preds, num_classes):
    matrix = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(matrix, (np.asarray(preds), np.asarray(labels)), 1)
    return matrix


def confusion_inferred_size(labels, preds, num_classes):
    size = int(max(labels.max(), preds.max())) + 1
    matrix = np.zeros((size, size), dtype=int)
    np.add.at(matrix, (np.asarray(labels), np.asarray(preds)), 1)
    return matrix


# Notebook 7 ---------------------------------------------------------------------------------------

def _input_gradient(model, images, targets, score):
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(score(model(x), targets), x)
    return grad


def _target_logit(out, targets):
    return out.gather(1, targets[:, None]).sum()


def saliency_signed(model, images, targets):
    return _input_gradient(model, images, targets, _target_logit).amax(1)


def saliency_channel_sum(model, images, targets):
    return _input_gradient(model, images, targets, _target_logit).abs().sum(1)


def saliency_all_logits(model, images, targets):
    return _input_gradient(model, images, targets, lambda out, t: out.sum()).abs().amax(1)


def saliency_probability(model, images, targets):
    return _input_gradient(model, images, targets, lambda out, t: _target_logit(out.softmax(1), t)).abs().amax(1)


def saliency_loss(model, images, targets):
    return _input_gradient(model, images, targets, F.cross_entropy).abs().amax(1)


def saliency_train_mode(model, images, targets):
    return _input_gradient(model.train(), images, targets, _target_logit).abs().amax(1)


def gradcam_weights_sum(gradients):
    return gradients.sum(dim=(2, 3))


def gradcam_weights_max(gradients):
    return gradients.amax(dim=(2, 3))


def gradcam_weights_channels(gradients):
    return gradients.mean(dim=1)


def gradcam_map_no_relu(activations, weights):
    return (weights[:, :, None, None] * activations).sum(dim=1)


def gradcam_map_abs(activations, weights):
    return (weights[:, :, None, None] * activations).sum(dim=1).abs()


def gradcam_map_mean(activations, weights):
    return F.relu((weights[:, :, None, None] * activations).mean(dim=1))


def _min_max(maps, per_map=True):
    dims = (1, 2) if per_map else (0, 1, 2)
    low, high = maps.amin(dim=dims, keepdim=True), maps.amax(dim=dims, keepdim=True)
    return (maps - low) / (high - low)


def upsample_nearest(cam, size):
    up = F.interpolate(cam[:, None], size=size, mode="nearest")[:, 0]
    return torch.nan_to_num(_min_max(up))


def upsample_align_corners(cam, size):
    up = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=True)[:, 0]
    return torch.nan_to_num(_min_max(up))


def upsample_batch_scaled(cam, size):
    return _min_max(F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0], per_map=False)


def upsample_zero_division(cam, size):
    return _min_max(F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0])


def upsample_scaled_first(cam, size):
    scaled = torch.nan_to_num(_min_max(cam))
    return F.interpolate(scaled[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def fine_tune_fixed_width(model, num_classes, freeze_backbone=False):
    if freeze_backbone:
        for parameter in model.parameters():
            parameter.requires_grad = False
    model.fc = nn.Linear(2048, num_classes)
    return model


def fine_tune_frozen_head(model, num_classes, freeze_backbone=False):
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    if freeze_backbone:
        for parameter in model.parameters():
            parameter.requires_grad = False
    return model


def fine_tune_never_frozen(model, num_classes, freeze_backbone=False):
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def fine_tune_always_frozen(model, num_classes, freeze_backbone=False):
    for parameter in model.parameters():
        parameter.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def fine_tune_no_bias(model, num_classes, freeze_backbone=False):
    if freeze_backbone:
        for parameter in model.parameters():
            parameter.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes, bias=False)
    return model


def fine_tune_reinitialised(model, num_classes, freeze_backbone=False):
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


# Notebook 8 ---------------------------------------------------------------------------------------

def _patch_grid(images, p):
    n, c, h, w = images.shape
    return images.reshape(n, c, h // p, p, w // p, p)     # (N, C, H/P, P, W/P, P)


def patchify_channels_last(images, patch_size):
    n, c = images.shape[:2]
    return _patch_grid(images, patch_size).permute(0, 2, 4, 3, 5, 1).reshape(n, -1, c * patch_size ** 2)


def patchify_column_major(images, patch_size):
    n, c = images.shape[:2]
    return _patch_grid(images, patch_size).permute(0, 4, 2, 1, 3, 5).reshape(n, -1, c * patch_size ** 2)


def patchify_reshape(images, patch_size):
    n, c = images.shape[:2]
    return images.reshape(n, -1, c * patch_size ** 2)


def embed_tokens_cls_last(patch_tokens, cls_token, pos_embed):
    return torch.cat([patch_tokens, cls_token.expand(patch_tokens.shape[0], -1, -1)], dim=1) + pos_embed


def embed_tokens_cls_without_position(patch_tokens, cls_token, pos_embed):
    return torch.cat([cls_token.expand(patch_tokens.shape[0], -1, -1), patch_tokens + pos_embed[:, 1:]], dim=1)


def embed_tokens_no_position(patch_tokens, cls_token, pos_embed):
    return torch.cat([cls_token.expand(patch_tokens.shape[0], -1, -1), patch_tokens], dim=1)


def attention_unscaled(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
    return weights @ v, weights


def attention_scaled_by_d(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1], dim=-1)
    return weights @ v, weights


def attention_wrong_axis(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-2)
    return weights @ v, weights


def attention_library(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return F.scaled_dot_product_attention(q, k, v), weights


def block_params_no_norm(dim, num_heads, mlp_dim):
    return 4 * dim * dim + 4 * dim + 2 * dim * mlp_dim + mlp_dim + dim


def block_params_one_projection(dim, num_heads, mlp_dim):
    return 4 * dim + 2 * (dim * dim + dim) + 2 * dim * mlp_dim + mlp_dim + dim


def block_params_per_head(dim, num_heads, mlp_dim):
    return 4 * dim + num_heads * (4 * dim * dim + 4 * dim) + 2 * dim * mlp_dim + mlp_dim + dim


def block_params_mlp_four_times(dim, num_heads, mlp_dim):
    return 12 * dim * dim + 13 * dim


def _rollout(attentions, identity=True, reverse=False):
    rollout = None
    for weights in (reversed(attentions) if reverse else attentions):
        a = weights.mean(dim=1)
        if identity:
            a = (a + torch.eye(a.shape[-1])) / 2
        rollout = a if rollout is None else a @ rollout
    return rollout


def rollout_first_block_left(attentions):
    return _rollout(attentions, reverse=True)


def rollout_no_identity(attentions):
    return _rollout(attentions, identity=False)


def rollout_max_over_heads(attentions):
    rollout = None
    for weights in attentions:
        a = (weights.amax(dim=1) + torch.eye(weights.shape[-1]))
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


# Notebook 9 ---------------------------------------------------------------------------------------

def _tensor_batches(images, labels, batch_size, order, label_order=None, drop=True):
    full = len(order) // batch_size * batch_size if drop else len(order)
    label_order = order if label_order is None else label_order
    return [(images[chunk], labels[label_chunk])
            for chunk, label_chunk in zip(order[:full].split(batch_size), label_order[:full].split(batch_size))]


def batches_unshuffled(images, labels, batch_size, generator):
    return _tensor_batches(images, labels, batch_size, torch.arange(len(images)))


def batches_keep_last(images, labels, batch_size, generator):
    return _tensor_batches(images, labels, batch_size, torch.randperm(len(images), generator=generator), drop=False)


def batches_two_permutations(images, labels, batch_size, generator):
    order = torch.randperm(len(images), generator=generator)
    return _tensor_batches(images, labels, batch_size, order, torch.randperm(len(images), generator=generator))


def batches_global_generator(images, labels, batch_size, generator):
    return _tensor_batches(images, labels, batch_size, torch.randperm(len(images)))


def flip_height(images, first_mask, epoch):
    mask = first_mask if epoch % 2 == 0 else ~first_mask
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(-2), images)


def flip_same_mask(images, first_mask, epoch):
    return torch.where(first_mask.view(-1, 1, 1, 1), images.flip(-1), images)


def flip_parity_swapped(images, first_mask, epoch):
    mask = first_mask if epoch % 2 == 1 else ~first_mask
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(-1), images)


def flip_in_place(images, first_mask, epoch):
    mask = first_mask if epoch % 2 == 0 else ~first_mask
    images[mask] = images[mask].flip(-1)
    return images


def _whitening(patches, eps, mistake=""):
    if mistake == "uncentred":
        covariance = patches.T @ patches / len(patches)
    elif mistake == "biased":
        centred = patches - patches.mean(0)
        covariance = centred.T @ centred / len(patches)
    else:
        covariance = torch.cov(patches.T)
    values, vectors = torch.linalg.eigh(covariance)
    scale = {"no_eps": torch.sqrt(values), "no_sqrt": values + eps}.get(mistake, torch.sqrt(values + eps))
    if mistake == "columns":
        return vectors / scale
    if mistake == "broadcast":
        return vectors.T / scale
    return (vectors / scale).T


def whitening_columns(patches, eps=5e-4):
    return _whitening(patches, eps, "columns")


def whitening_broadcast(patches, eps=5e-4):
    return _whitening(patches, eps, "broadcast")


def whitening_no_sqrt(patches, eps=5e-4):
    return _whitening(patches, eps, "no_sqrt")


def whitening_no_eps(patches, eps=5e-4):
    return _whitening(patches, eps, "no_eps")


def whitening_uncentred(patches, eps=5e-4):
    return _whitening(patches, eps, "uncentred")


def whitening_biased(patches, eps=5e-4):
    return _whitening(patches, eps, "biased")


def tta_height(model, images):
    model.eval()
    with torch.no_grad():
        return (model(images) + model(images.flip(-2))) / 2


def tta_sum(model, images):
    model.eval()
    with torch.no_grad():
        return model(images) + model(images.flip(-1))


def tta_probabilities(model, images):
    model.eval()
    with torch.no_grad():
        return (model(images).softmax(1) + model(images.flip(-1)).softmax(1)) / 2


def tta_train_mode(model, images):
    with torch.no_grad():
        return (model(images) + model(images.flip(-1))) / 2


def tta_mirror_only(model, images):
    model.eval()
    with torch.no_grad():
        return model(images.flip(-1))


def tta_with_grad(model, images):
    model.eval()
    return (model(images) + model(images.flip(-1))) / 2


MISTAKES = {
    "nb01.conv_params": [(conv_params_no_bias, "bias"), (conv_params_flat, "depth C")],
    "nb01.stack_output_size": [(stack_no_floor, "round down"), (stack_one_side, "each side"),
                               (stack_no_plus_one, "off by one")],
    "nb01.conv2d_strided": [(conv2d_flipped, "don't flip"), (conv2d_stride_ignored, "stride"),
                            (conv2d_no_padding, "pad the image")],
    "nb01.learn_filter": [(learn_filter_no_zero_grad, "zero the gradient"), (learn_filter_flipped, "flipped")],
    "nb01.avg_pool_via_conv": [(avg_pool_sum, "divide by k²"), (avg_pool_mixing_channels, "groups=C"),
                               (avg_pool_stride_one, "stride=k"), (avg_pool_library, "calls F.avg_pool2d")],
    "nb02.batchnorm_forward": [(batchnorm_unbiased, "biased variance"), (batchnorm_running_biased, "unbiased"),
                               (batchnorm_per_image, "axes (0, 2, 3)"), (batchnorm_momentum_reversed, "momentum")],
    "nb02.train_one_epoch": [(train_no_zero_grad, "zero_grad"), (train_no_train_mode, "model.train()"),
                             (train_last_loss, "not the last batch"), (train_unweighted, "by its size")],
    "nb02.one_cycle_lr": [(one_cycle_linear, "half cosine"), (one_cycle_wrong_floor, "final_div_factor")],
    "nb02.random_crop_flip": [(crop_flip_one_draw, "for each image"), (crop_flip_off_by_one, "2 * pad + 1"),
                              (crop_flip_reflect, "zeros")],
    "nb02.eval_accuracy": [(accuracy_train_mode, "model.eval()"), (accuracy_percent, "not a percentage"),
                           (accuracy_per_batch, "divide once")],
    "nb03.topk_error": [(topk_accuracy, "1 - accuracy"), (topk_argmax_only, "not only the argmax"),
                        (topk_smallest, "LARGEST")],
    "nb03.MyNoShortcutBlock": [(NoShortcutBlockWithBias, "no bias"), (NoShortcutBlockNoLastReLU, "ReLU after the second"),
                          (NoShortcutBlockNoPadding, "padding=1")],
    "nb03.needs_projection": [(needs_projection_article, "stride-2 block")],
    "nb03.option_a_shortcut": [(option_a_average, "don't average"), (option_a_zeros_first, "after the input's"),
                               (option_a_no_stride, "ceil(H / stride)")],
    "nb03.resnet34_params": [(resnet34_no_projection, "projection"), (resnet34_no_bn, "gamma and beta")],
    "nb04.KerasBottleneck": [(KerasBottleneckNoBias, "use_bias=True"), (KerasBottleneckShortcutBN, "no BatchNorm"),
                             (KerasBottleneckReLUBeforeAdd, "after adding the shortcut")],
    "nb04.keras_param_total": [(keras_total_params_only, "running mean and variance"),
                               (keras_total_all_buffers, "num_batches_tracked"),
                               (keras_total_trainable, "trainable or not")],
    "nb04.global_avg_pool": [(global_avg_pool_sum, "divide by H·W"), (global_avg_pool_keepdim, "flatten"),
                             (global_avg_pool_wrong_axis, "last two axes"), (global_avg_pool_library, "calls")],
    "nb04.keras_same_padding": [(same_padding_symmetric, "ceil(n / s)"), (same_padding_swapped, "at the end")],
    "nb05.my_stratified_split": [(split_random, "every class"), (split_floor, "not the floor"),
                                 (split_first_ones, "not the first ones"), (split_unseeded, "same seed")],
    "nb05.receptive_field": [(receptive_field_no_strides, "earlier strides"), (receptive_field_own_stride, "BEFORE")],
    "nb05.vgg_config": [(vgg_config_wide, "stays at 512"), (vgg_config_no_last_pool, "fifth block")],
    "nb05.vgg_classifier_params": [(vgg_classifier_no_bias, "bias"), (vgg_classifier_512, "25,088")],
    "nb05.my_dropout": [(dropout_unscaled, "1 / (1 - p)"), (dropout_scaled_at_eval, "evaluation time"),
                        (dropout_keep_probability, "probability of dropping"), (dropout_library, "calls F.dropout")],
    "nb06.conv1x1_by_matmul": [(conv1x1_no_permute, "permute"), (conv1x1_no_bias, "add the bias"),
                               (conv1x1_library, "calls")],
    "nb06.conv_macs": [(conv_macs_input_size, "OUTPUT position"), (conv_macs_flops, "FLOPs")],
    "nb06.rotate_flip": [(rotate_flip_clockwise, "counter-clockwise"), (rotate_flip_upside_down, "left-right"),
                         (rotate_flip_wrong_order, "don't commute")],
    "nb06.confusion_matrix": [(confusion_transposed, "row = true class"), (confusion_inferred_size, "num_classes x")],
    "nb07.saliency_map": [(saliency_signed, "absolute value"), (saliency_channel_sum, "not the sum"),
                          (saliency_all_logits, "own target class"), (saliency_probability, "not its probability"),
                          (saliency_loss, "not a loss"), (saliency_train_mode, "eval mode")],
    "nb07.gradcam_weights": [(gradcam_weights_sum, "divide the sum by h·w"), (gradcam_weights_max, "not the maximum"),
                             (gradcam_weights_channels, "(N, K)")],
    "nb07.gradcam_map": [(gradcam_map_no_relu, "apply a ReLU"), (gradcam_map_abs, "not the absolute value"),
                         (gradcam_map_mean, "don't average")],
    "nb07.upsample_heatmap": [(upsample_nearest, "mode='bilinear'"), (upsample_align_corners, "align_corners=False"),
                              (upsample_batch_scaled, "its own"), (upsample_zero_division, "0 by 0"),
                              (upsample_scaled_first, "upsample first")],
    "nb07.prepare_for_fine_tuning": [(fine_tune_fixed_width, "model.fc.in_features"),
                                     (fine_tune_frozen_head, "must train"), (fine_tune_never_frozen, "still train"),
                                     (fine_tune_always_frozen, "freeze nothing"), (fine_tune_no_bias, "bias"),
                                     (fine_tune_reinitialised, "keep the pretrained weights")],
    "nb08.patchify": [(patchify_channels_last, "(C, P, P)"), (patchify_column_major, "row-major"),
                      (patchify_reshape, "plain reshape")],
    "nb08.embed_tokens": [(embed_tokens_cls_last, "goes first"), (embed_tokens_cls_without_position, "row 0"),
                          (embed_tokens_no_position, "add the position embedding")],
    "nb08.attention": [(attention_unscaled, "sqrt(d)"), (attention_scaled_by_d, "square ROOT"),
                       (attention_wrong_axis, "last axis"), (attention_library, "calls F.scaled_dot_product_attention")],
    "nb08.block_params": [(block_params_no_norm, "LayerNorms"), (block_params_one_projection, "queries, keys and values"),
                          (block_params_per_head, "heads"), (block_params_mlp_four_times, "use mlp_dim")],
    "nb08.attention_rollout": [(rollout_first_block_left, "on the LEFT"), (rollout_no_identity, "identity"),
                               (rollout_max_over_heads, "not the maximum")],
    "nb09.tensor_batches": [(batches_unshuffled, "shuffle"), (batches_keep_last, "drop"),
                            (batches_two_permutations, "same permutation"), (batches_global_generator, "generator")],
    "nb09.alternating_flip": [(flip_height, "width axis"), (flip_same_mask, "OTHER images"),
                              (flip_parity_swapped, "epoch % 2"), (flip_in_place, "in place")],
    "nb09.whitening_matrix": [(whitening_columns, "COLUMNS: transpose"), (whitening_broadcast, "divides the COLUMNS"),
                              (whitening_no_sqrt, "square ROOT"), (whitening_no_eps, "add eps"),
                              (whitening_uncentred, "subtract each column's mean"), (whitening_biased, "M - 1")],
    "nb09.tta_logits": [(tta_height, "width axis"), (tta_sum, "divide their sum by 2"),
                        (tta_probabilities, "average the logits"), (tta_train_mode, "model.eval()"),
                        (tta_mirror_only, "AND"), (tta_with_grad, "torch.no_grad()")],
}
