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

def _group_norm_stats(x, num_groups, gamma, beta, eps, shape, axes, ddof=0):
    n, c, h, w = x.shape
    grouped = x.reshape(shape)
    mean, var = grouped.mean(axis=axes, keepdims=True), grouped.var(axis=axes, ddof=ddof, keepdims=True)
    x_hat = ((grouped - mean) / np.sqrt(var + eps)).reshape(n, c, h, w)
    return gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)


def group_norm_over_batch(x, num_groups, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    return _group_norm_stats(x, num_groups, gamma, beta, eps, (n, num_groups, c // num_groups, h, w), (0, 2, 3, 4))


def group_norm_strided_groups(x, num_groups, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    return _group_norm_stats(x, num_groups, gamma, beta, eps, (n, c // num_groups, num_groups, h, w), (1, 3, 4))


def group_norm_per_channel(x, num_groups, gamma, beta, eps=1e-5):
    return _group_norm_stats(x, num_groups, gamma, beta, eps, x.shape, (2, 3))


def group_norm_unbiased(x, num_groups, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    return _group_norm_stats(x, num_groups, gamma, beta, eps, (n, num_groups, c // num_groups, h, w), (2, 3, 4), ddof=1)


def group_norm_eps_outside(x, num_groups, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    grouped = x.reshape(n, num_groups, c // num_groups, h, w)
    mean, std = grouped.mean(axis=(2, 3, 4), keepdims=True), grouped.std(axis=(2, 3, 4), keepdims=True)
    return gamma.reshape(1, -1, 1, 1) * ((grouped - mean) / (std + eps)).reshape(n, c, h, w) + beta.reshape(1, -1, 1, 1)


def group_norm_library(x, num_groups, gamma, beta, eps=1e-5):
    return F.group_norm(torch.tensor(x), num_groups, torch.tensor(gamma), torch.tensor(beta), eps).numpy()


def _accumulating(model, loader, optimizer, loss_fn, steps, scale=True, zero_each=False, last_step=True, train=True,
                  returns="mean"):
    if train:
        model.train()
    optimizer.zero_grad()
    losses, sizes = [], []
    for k, (x, y) in enumerate(loader, 1):
        if zero_each:
            optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        (loss / steps if scale else loss).backward()
        if k % steps == 0 or (last_step and k == len(loader)):
            optimizer.step()
            optimizer.zero_grad()
        losses.append(loss.item())
        sizes.append(len(y))
    mean = np.dot(losses, sizes) / sum(sizes)
    return {"mean": mean, "scaled": mean / steps, "unweighted": np.mean(losses)}[returns]


def accumulate_unscaled(model, loader, optimizer, loss_fn, steps):
    return _accumulating(model, loader, optimizer, loss_fn, steps, scale=False)


def accumulate_zero_each_batch(model, loader, optimizer, loss_fn, steps):
    return _accumulating(model, loader, optimizer, loss_fn, steps, zero_each=True)


def accumulate_no_last_step(model, loader, optimizer, loss_fn, steps):
    return _accumulating(model, loader, optimizer, loss_fn, steps, last_step=False)


def accumulate_no_train_mode(model, loader, optimizer, loss_fn, steps):
    return _accumulating(model, loader, optimizer, loss_fn, steps, train=False)


def accumulate_scaled_loss(model, loader, optimizer, loss_fn, steps):
    return _accumulating(model, loader, optimizer, loss_fn, steps, returns="scaled")


def accumulate_unweighted(model, loader, optimizer, loss_fn, steps):
    return _accumulating(model, loader, optimizer, loss_fn, steps, returns="unweighted")


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


def _shortcut_parameters(in_channels, stages, expansion, article=False, bn=2, stride_every=False,
                         out_expansion=True, next_expansion=True):
    counts, channels = [], in_channels
    for width, num_blocks, stride in stages:
        out_channels = width * (expansion if out_expansion else 1)
        for index in range(num_blocks):
            block_stride = stride if index == 0 or stride_every else 1
            project = channels != out_channels if article else (block_stride != 1 or channels != out_channels)
            counts.append(channels * out_channels + bn * out_channels if project else 0)
            channels = out_channels if next_expansion else width
    return counts


def shortcut_parameters_article(in_channels, stages, expansion=1):
    return _shortcut_parameters(in_channels, stages, expansion, article=True)


def shortcut_parameters_no_bn(in_channels, stages, expansion=1):
    return _shortcut_parameters(in_channels, stages, expansion, bn=0)


def shortcut_parameters_stride_every_block(in_channels, stages, expansion=1):
    return _shortcut_parameters(in_channels, stages, expansion, stride_every=True)


def shortcut_parameters_no_expansion(in_channels, stages, expansion=1):
    return _shortcut_parameters(in_channels, stages, expansion, out_expansion=False)


def shortcut_parameters_next_input_width(in_channels, stages, expansion=1):
    return _shortcut_parameters(in_channels, stages, expansion, next_expansion=False)


def shortcut_parameters_total(in_channels, stages, expansion=1):
    return sum(_shortcut_parameters(in_channels, stages, expansion))


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


def live_taps_no_stride(n, kernel, stride, padding):
    outputs = n + 2 * padding - kernel + 1
    return sum(any(0 <= i + j - padding < n for i in range(outputs)) for j in range(kernel))


def live_taps_squared(n, kernel, stride, padding):
    outputs = (n + 2 * padding - kernel) // stride + 1
    return sum(any(0 <= i * stride + j - padding < n for i in range(outputs)) for j in range(kernel)) ** 2


def live_taps_every_output(n, kernel, stride, padding):
    outputs = (n + 2 * padding - kernel) // stride + 1
    return sum(all(0 <= i * stride + j - padding < n for i in range(outputs)) for j in range(kernel))


def live_taps_shorter_side(n, kernel, stride, padding):
    return min(kernel, n)


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


def _vgg_params(config, num_classes, conv_bias=True, square=False, first=None):
    total, channels = 0, 3
    for item in config:
        if item != "M":
            total += 9 * (item if square else channels) * item + (item if conv_bias else 0)
            channels = item
    sizes = [first or channels * 7 * 7, 4096, 4096, num_classes]
    return total + sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def vgg_params_no_conv_bias(config, num_classes):
    return _vgg_params(config, num_classes, conv_bias=False)


def vgg_params_square_convs(config, num_classes):
    return _vgg_params(config, num_classes, square=True)


def vgg_params_first_dense_25088(config, num_classes):
    return _vgg_params(config, num_classes, first=25088)


def _channel_mask(x, p, shared=False):
    return torch.rand(1 if shared else x.shape[0], x.shape[1], 1, 1) >= p


def dropout_elementwise(x, p, training):
    return x * (torch.rand(x.shape) >= p) / (1 - p) if training else x


def dropout_unscaled(x, p, training):
    return x * _channel_mask(x, p) if training else x


def dropout_scaled_at_eval(x, p, training):
    return x * _channel_mask(x, p) if training else x * (1 - p)


def dropout_keep_probability(x, p, training):
    return x * (torch.rand(x.shape[0], x.shape[1], 1, 1) < p) / p if training else x


def dropout_shared_by_the_batch(x, p, training):
    return x * _channel_mask(x, p, shared=True) / (1 - p) if training else x


def dropout_library(x, p, training):
    return nn.Dropout2d(p).train(training)(x)


# Notebook 6 ---------------------------------------------------------------------------------------

def conv1x1_no_permute(x, weight, bias):
    n, c, h, w = x.shape
    return (x.reshape(n * h * w, c) @ weight[:, :, 0, 0].T + bias).reshape(n, -1, h, w)


def conv1x1_no_bias(x, weight, bias):
    return (x.permute(0, 2, 3, 1) @ weight[:, :, 0, 0].T).permute(0, 3, 1, 2)


def conv1x1_library(x, weight, bias):
    return F.conv2d(x, weight, bias)


def _bottleneck_macs(c_in, w, size, stride, at_input=False, shortcut=True, shortcut_on_stride_only=False):
    out = size if at_input else (size + 2 - 3) // stride + 1
    macs = size * size * c_in * w + out * out * 9 * w * w + out * out * 4 * w * w
    needs = stride != 1 if shortcut_on_stride_only else stride != 1 or c_in != 4 * w
    return macs + (out * out * c_in * 4 * w if shortcut and needs else 0)


def bottleneck_macs_input_size(in_channels, width, size, stride):
    return _bottleneck_macs(in_channels, width, size, stride, at_input=True)


def bottleneck_macs_no_shortcut(in_channels, width, size, stride):
    return _bottleneck_macs(in_channels, width, size, stride, shortcut=False)


def bottleneck_macs_shortcut_on_stride_only(in_channels, width, size, stride):
    return _bottleneck_macs(in_channels, width, size, stride, shortcut_on_stride_only=True)


def bottleneck_macs_flops(in_channels, width, size, stride):
    return 2 * _bottleneck_macs(in_channels, width, size, stride)


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


def _noisy_gradients(model, images, targets, noise):
    return torch.stack([_input_gradient(model, images + sample, targets, _target_logit) for sample in noise])


def smoothgrad_no_noise(model, images, targets, noise):
    return _input_gradient(model, images, targets, _target_logit).abs().amax(1)


def smoothgrad_signed_mean(model, images, targets, noise):
    return _noisy_gradients(model, images, targets, noise).mean(0).abs().amax(1)


def smoothgrad_mean_then_max(model, images, targets, noise):
    return _noisy_gradients(model, images, targets, noise).abs().mean(0).amax(1)


def smoothgrad_sum(model, images, targets, noise):
    return _noisy_gradients(model, images, targets, noise).abs().amax(2).sum(0)


def smoothgrad_first_draw(model, images, targets, noise):
    return _input_gradient(model, images + noise[0], targets, _target_logit).abs().amax(1)


def smoothgrad_train_mode(model, images, targets, noise):
    return _noisy_gradients(model.train(), images, targets, noise).abs().amax(2).mean(0)


def _path(model, images, targets, baselines, fractions, score=_target_logit):
    return torch.stack([_input_gradient(model, baselines + a * (images - baselines), targets, score)
                        for a in fractions])


def ig_left_riemann(model, images, targets, baselines, steps):
    return (images - baselines) * _path(model, images, targets, baselines, [k / steps for k in range(steps)]).mean(0)


def ig_no_difference(model, images, targets, baselines, steps):
    return _path(model, images, targets, baselines, [k / steps for k in range(1, steps + 1)]).mean(0)


def ig_sum(model, images, targets, baselines, steps):
    return (images - baselines) * _path(model, images, targets, baselines,
                                        [k / steps for k in range(1, steps + 1)]).sum(0)


def ig_times_images(model, images, targets, baselines, steps):
    return images * _path(model, images, targets, baselines, [k / steps for k in range(1, steps + 1)]).mean(0)


def ig_gradient_at_image(model, images, targets, baselines, steps):
    return (images - baselines) * _input_gradient(model, images, targets, _target_logit)


def ig_probability(model, images, targets, baselines, steps):
    return (images - baselines) * _path(model, images, targets, baselines, [k / steps for k in range(1, steps + 1)],
                                        lambda out, t: _target_logit(out.softmax(1), t)).mean(0)


def _weighted_sum(features, fc_weight, targets):
    return (fc_weight[targets][:, :, None, None] * features).sum(dim=1)


def cam_no_division(features, fc_weight, targets):
    return F.relu(_weighted_sum(features, fc_weight, targets))


def cam_no_relu(features, fc_weight, targets):
    return _weighted_sum(features, fc_weight, targets) / (features.shape[2] * features.shape[3])


def cam_mean_channels(features, fc_weight, targets):
    h, w = features.shape[2:]
    return F.relu(_weighted_sum(features, fc_weight, targets) / features.shape[1]) / (h * w)


def cam_first_target(features, fc_weight, targets):
    h, w = features.shape[2:]
    return cam_no_division(features, fc_weight, targets[:1].expand(len(targets))) / (h * w)


def _min_max(maps, per_map=True):
    dims = (1, 2) if per_map else (0, 1, 2)
    low, high = maps.amin(dim=dims, keepdim=True), maps.amax(dim=dims, keepdim=True)
    return (maps - low) / (high - low)


def _tent_weights(pixels, cells, jump, start, clamp=True, nearest=False):
    u = (torch.arange(pixels, dtype=torch.float32) - start) / jump
    if clamp:
        u = u.clamp(0, cells - 1)
    if nearest:
        u = u.round()
    return (1 - (u[:, None] - torch.arange(cells, dtype=torch.float32)).abs()).clamp_min(0)


def _placed(cam, size, jump, start, **options):
    return _tent_weights(size[0], cam.shape[1], jump, start, **options) @ cam \
        @ _tent_weights(size[1], cam.shape[2], jump, start, **options).T


def heatmap_interpolated(cam, size, jump, start):
    up = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return torch.nan_to_num(_min_max(up))


def heatmap_align_corners(cam, size, jump, start):
    up = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=True)[:, 0]
    return torch.nan_to_num(_min_max(up))


def heatmap_no_start(cam, size, jump, start):
    return torch.nan_to_num(_min_max(_placed(cam, size, jump, 0.0)))


def heatmap_fades(cam, size, jump, start):
    return torch.nan_to_num(_min_max(_placed(cam, size, jump, start, clamp=False)))


def heatmap_nearest_cell(cam, size, jump, start):
    return torch.nan_to_num(_min_max(_placed(cam, size, jump, start, nearest=True)))


def heatmap_unscaled(cam, size, jump, start):
    return _placed(cam, size, jump, start)


def heatmap_batch_scaled(cam, size, jump, start):
    return _min_max(_placed(cam, size, jump, start), per_map=False)


def heatmap_zero_division(cam, size, jump, start):
    return _min_max(_placed(cam, size, jump, start))


def heatmap_scaled_first(cam, size, jump, start):
    return _placed(torch.nan_to_num(_min_max(cam)), size, jump, start)


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

def _strided_grid(images, p, s):
    return images.unfold(2, p, s).unfold(3, p, s)         # (N, C, rows, columns, P, P)


def strided_patches_channels_last(images, patch_size, stride):
    n, c = images.shape[:2]
    return _strided_grid(images, patch_size, stride).permute(0, 2, 3, 4, 5, 1).reshape(n, -1, c * patch_size ** 2)


def strided_patches_column_major(images, patch_size, stride):
    n, c = images.shape[:2]
    return _strided_grid(images, patch_size, stride).permute(0, 3, 2, 1, 4, 5).reshape(n, -1, c * patch_size ** 2)


def strided_patches_ignore_stride(images, patch_size, stride):
    n, c = images.shape[:2]
    return _strided_grid(images, patch_size, patch_size).permute(0, 2, 3, 1, 4, 5).reshape(n, -1, c * patch_size ** 2)


def strided_patches_library(images, patch_size, stride):
    return F.unfold(images, patch_size, stride=stride).transpose(1, 2)


def _resize_grid(pos_embed, new_grid, view="tokens", transpose=False, mode="bilinear"):
    rows, columns = new_grid
    d = pos_embed.shape[-1]
    g = math.isqrt(pos_embed.shape[1] - 1)
    if view == "tokens":
        grid = pos_embed[:, 1:].reshape(1, g, g, d).permute(0, 3, 1, 2)
    else:
        grid = pos_embed[:, 1:].reshape(1, d, g, g)
    if transpose:
        grid = grid.transpose(2, 3)
    grid = F.interpolate(grid, size=(rows, columns), mode=mode,
                         **({} if mode == "nearest" else {"align_corners": False}))
    if transpose:
        grid = grid.transpose(2, 3)
    return grid.permute(0, 2, 3, 1).reshape(1, rows * columns, d)


def resize_pos_embed_plain_reshape(pos_embed, new_grid):
    return torch.cat([pos_embed[:, :1], _resize_grid(pos_embed, new_grid, view="channels")], dim=1)


def resize_pos_embed_column_major(pos_embed, new_grid):
    return torch.cat([pos_embed[:, :1], _resize_grid(pos_embed, new_grid, transpose=True)], dim=1)


def resize_pos_embed_nearest(pos_embed, new_grid):
    return torch.cat([pos_embed[:, :1], _resize_grid(pos_embed, new_grid, mode="nearest")], dim=1)


def resize_pos_embed_drop_class(pos_embed, new_grid):
    return _resize_grid(pos_embed, new_grid)


def resize_pos_embed_class_last(pos_embed, new_grid):
    return torch.cat([_resize_grid(pos_embed, new_grid), pos_embed[:, :1]], dim=1)


def _masked_scores(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def masked_attention_after_softmax(q, k, v, mask):
    weights = torch.softmax(_masked_scores(q, k), dim=-1) * mask
    return weights @ v, weights


def masked_attention_fill_zero(q, k, v, mask):
    weights = torch.softmax(_masked_scores(q, k).masked_fill(~mask, 0.0), dim=-1)
    return weights @ v, weights


def masked_attention_inverted(q, k, v, mask):
    weights = torch.softmax(_masked_scores(q, k).masked_fill(mask, float("-inf")), dim=-1)
    return weights @ v, weights


def masked_attention_library(q, k, v, mask):
    weights = torch.softmax(_masked_scores(q, k).masked_fill(~mask, float("-inf")), dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights


def gated_block_params_one_up(dim, mlp_dim, qkv_bias):
    return 4 * dim + 3 * dim * dim + (3 * dim if qkv_bias else 0) + dim * dim + dim + 2 * dim * mlp_dim + mlp_dim + dim


def gated_block_params_always_bias(dim, mlp_dim, qkv_bias):
    return 4 * dim + 4 * dim * dim + 4 * dim + 2 * (dim * mlp_dim + mlp_dim) + mlp_dim * dim + dim


def gated_block_params_no_projection_bias(dim, mlp_dim, qkv_bias):
    bias = 4 * dim if qkv_bias else 0
    return 4 * dim + 4 * dim * dim + bias + 2 * (dim * mlp_dim + mlp_dim) + mlp_dim * dim + dim


def gated_block_params_no_norm(dim, mlp_dim, qkv_bias):
    return 4 * dim * dim + (3 * dim if qkv_bias else 0) + dim + 2 * (dim * mlp_dim + mlp_dim) + mlp_dim * dim + dim


# Notebook 9 ---------------------------------------------------------------------------------------

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


def _shift(images, shifts, pad, mode="reflect", sign=1, swap=False):
    h, w = images.shape[-2:]
    padded = F.pad(images, (pad, pad, pad, pad), mode=mode)
    crops = []
    for image, (dy, dx) in zip(padded, shifts.tolist()):
        dy, dx = (dx, dy) if swap else (dy, dx)
        crops.append(image[:, pad + sign * dy:pad + sign * dy + h, pad + sign * dx:pad + sign * dx + w])
    return torch.stack(crops)


def shift_opposite(images, shifts, pad):
    return _shift(images, shifts, pad, sign=-1)


def shift_swapped(images, shifts, pad):
    return _shift(images, shifts, pad, swap=True)


def shift_zero_border(images, shifts, pad):
    return _shift(images, shifts, pad, mode="constant")


def shift_replicate(images, shifts, pad):
    return _shift(images, shifts, pad, mode="replicate")


def shift_first_for_all(images, shifts, pad):
    return _shift(images, shifts[:1].expand(len(images), 2), pad)


def shift_in_place(images, shifts, pad):
    images.copy_(_shift(images, shifts, pad))
    return images


def _six(model, images, weights=(0.5, 0.25, 0.25), mode="reflect", flip_shifted=True, evaluate=True, grad=False):
    if evaluate:
        model.eval()
    h, w = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode=mode)
    with torch.set_grad_enabled(grad):
        views = [images, padded[..., 2:, 2:], padded[..., :h, :w]]
        means = [(model(x) + model(x.flip(-1))) / 2 if i == 0 or flip_shifted else model(x)
                 for i, x in enumerate(views)]
        return sum(weight * mean for weight, mean in zip(weights, means))


def six_equal_weights(model, images):
    return _six(model, images, weights=(1 / 3, 1 / 3, 1 / 3))


def six_zero_border(model, images):
    return _six(model, images, mode="constant")


def six_unflipped_shifts(model, images):
    return _six(model, images, flip_shifted=False)


def six_train_mode(model, images):
    return _six(model, images, evaluate=False)


def six_with_grad(model, images):
    return _six(model, images, grad=True)


def six_two_views(model, images):
    model.eval()
    with torch.no_grad():
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
    "nb02.group_norm": [(group_norm_over_batch, "never mixes the images"), (group_norm_strided_groups, "consecutive"),
                        (group_norm_per_channel, "all of them together"), (group_norm_unbiased, "biased variance"),
                        (group_norm_eps_outside, "inside the square root"), (group_norm_library, "with NumPy")],
    "nb02.train_accumulating": [(accumulate_unscaled, "divide each batch's loss"),
                                (accumulate_zero_each_batch, "only after a step"),
                                (accumulate_no_last_step, "after the last batch"),
                                (accumulate_no_train_mode, "model.train()"),
                                (accumulate_scaled_loss, "before dividing"), (accumulate_unweighted, "by its size")],
    "nb02.one_cycle_lr": [(one_cycle_linear, "half cosine"), (one_cycle_wrong_floor, "final_div_factor")],
    "nb02.random_crop_flip": [(crop_flip_one_draw, "for each image"), (crop_flip_off_by_one, "2 * pad + 1"),
                              (crop_flip_reflect, "zeros")],
    "nb02.eval_accuracy": [(accuracy_train_mode, "model.eval()"), (accuracy_percent, "not a percentage"),
                           (accuracy_per_batch, "divide once")],
    "nb03.topk_error": [(topk_accuracy, "1 - accuracy"), (topk_argmax_only, "not only the argmax"),
                        (topk_smallest, "LARGEST")],
    "nb03.MyNoShortcutBlock": [(NoShortcutBlockWithBias, "no bias"), (NoShortcutBlockNoLastReLU, "ReLU after the second"),
                          (NoShortcutBlockNoPadding, "padding=1")],
    "nb03.shortcut_parameters": [(shortcut_parameters_article, "even with equal channels"),
                                 (shortcut_parameters_no_bn, "AND a BatchNorm"),
                                 (shortcut_parameters_stride_every_block, "only the first block"),
                                 (shortcut_parameters_no_expansion, "its shortcut must match them"),
                                 (shortcut_parameters_next_input_width, "the next block's input"),
                                 (shortcut_parameters_total, "one number per block")],
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
    "nb04.live_taps": [(live_taps_no_stride, "stride skips"), (live_taps_squared, "one axis"),
                       (live_taps_every_output, "ANY output"), (live_taps_shorter_side, "check each output")],
    "nb05.my_stratified_split": [(split_random, "every class"), (split_floor, "not the floor"),
                                 (split_first_ones, "not the first ones"), (split_unseeded, "same seed")],
    "nb05.receptive_field": [(receptive_field_no_strides, "earlier strides"), (receptive_field_own_stride, "BEFORE")],
    "nb05.vgg_config": [(vgg_config_wide, "stays at 512"), (vgg_config_no_last_pool, "fifth block")],
    "nb05.vgg_params": [(vgg_params_no_conv_bias, "has a bias"), (vgg_params_square_convs, "previous width"),
                        (vgg_params_first_dense_25088, "not always 512")],
    "nb05.my_dropout": [(dropout_elementwise, "whole maps"), (dropout_unscaled, "1 / (1 - p)"),
                        (dropout_scaled_at_eval, "evaluation time"), (dropout_keep_probability, "probability of dropping"),
                        (dropout_shared_by_the_batch, "its own mask"), (dropout_library, "calls F.dropout")],
    "nb06.conv1x1_by_matmul": [(conv1x1_no_permute, "permute"), (conv1x1_no_bias, "add the bias"),
                               (conv1x1_library, "calls")],
    "nb06.bottleneck_macs": [(bottleneck_macs_input_size, "carries the stride"), (bottleneck_macs_no_shortcut, "count it"),
                             (bottleneck_macs_shortcut_on_stride_only, "only the channels change"),
                             (bottleneck_macs_flops, "FLOPs")],
    "nb06.rotate_flip": [(rotate_flip_clockwise, "counter-clockwise"), (rotate_flip_upside_down, "left-right"),
                         (rotate_flip_wrong_order, "don't commute")],
    "nb06.confusion_matrix": [(confusion_transposed, "row = true class"), (confusion_inferred_size, "num_classes x")],
    "nb07.smoothgrad": [(smoothgrad_no_noise, "add noise[s]"), (smoothgrad_signed_mean, "cancel"),
                        (smoothgrad_mean_then_max, "maximum for each copy"),
                        (smoothgrad_sum, "divide their sum by S"), (smoothgrad_first_draw, "not only the first"),
                        (smoothgrad_train_mode, "eval mode")],
    "nb07.integrated_gradients": [(ig_left_riemann, "right Riemann sum"),
                                  (ig_no_difference, "by (images - baselines)"),
                                  (ig_sum, "divide their sum by steps"), (ig_times_images, "not by the images"),
                                  (ig_gradient_at_image, "not only at the image"),
                                  (ig_probability, "not its probability")],
    "nb07.class_activation_map": [(cam_no_division, "divide by h·w"), (cam_no_relu, "a ReLU"),
                                  (cam_mean_channels, "don't average them"), (cam_first_target, "own target")],
    "nb07.heatmap_on_image": [(heatmap_interpolated, "stretches"), (heatmap_align_corners, "align_corners=True"),
                              (heatmap_no_start, "subtract start"), (heatmap_fades, "don't fade to zero"),
                              (heatmap_nearest_cell, "nearest cell's value"),
                              (heatmap_unscaled, "scale each map to 0..1"),
                              (heatmap_batch_scaled, "its own"), (heatmap_zero_division, "0 by 0"),
                              (heatmap_scaled_first, "place first")],
    "nb07.prepare_for_fine_tuning": [(fine_tune_fixed_width, "model.fc.in_features"),
                                     (fine_tune_frozen_head, "must train"), (fine_tune_never_frozen, "still train"),
                                     (fine_tune_always_frozen, "freeze nothing"), (fine_tune_no_bias, "bias"),
                                     (fine_tune_reinitialised, "keep the pretrained weights")],
    "nb08.strided_patches": [(strided_patches_channels_last, "(C, P, P)"), (strided_patches_column_major, "row-major"),
                             (strided_patches_ignore_stride, "(H - P) // S + 1"), (strided_patches_library, "calls F.unfold")],
    "nb08.resize_pos_embed": [(resize_pos_embed_plain_reshape, "(1, g, g, D)"), (resize_pos_embed_column_major, "row-major"),
                              (resize_pos_embed_nearest, "bilinearly"), (resize_pos_embed_drop_class, "keep the class"),
                              (resize_pos_embed_class_last, "stays first")],
    "nb08.masked_attention": [(masked_attention_after_softmax, "BEFORE the softmax"), (masked_attention_fill_zero, "e^0"),
                              (masked_attention_inverted, "MAY attend"),
                              (masked_attention_library, "calls F.scaled_dot_product_attention")],
    "nb08.gated_block_params": [(gated_block_params_one_up, "TWO layers"), (gated_block_params_always_bias, "no bias"),
                                (gated_block_params_no_projection_bias, "output projection keeps"),
                                (gated_block_params_no_norm, "LayerNorms")],
    "nb09.shift_images": [(shift_opposite, "not pad - dy"), (shift_swapped, "(dy, dx)"),
                          (shift_zero_border, "not with zeros"), (shift_replicate, "replicate"),
                          (shift_first_for_all, "its own shift"), (shift_in_place, "in place")],
    "nb09.alternating_flip": [(flip_height, "width axis"), (flip_same_mask, "OTHER images"),
                              (flip_parity_swapped, "epoch % 2"), (flip_in_place, "in place")],
    "nb09.whitening_matrix": [(whitening_columns, "COLUMNS: transpose"), (whitening_broadcast, "divides the COLUMNS"),
                              (whitening_no_sqrt, "square ROOT"), (whitening_no_eps, "add eps"),
                              (whitening_uncentred, "subtract each column's mean"), (whitening_biased, "M - 1")],
    "nb09.six_view_logits": [(six_equal_weights, "one half"), (six_zero_border, "not with zeros"),
                             (six_unflipped_shifts, "mirror the shifted images"), (six_train_mode, "model.eval()"),
                             (six_with_grad, "torch.no_grad()"), (six_two_views, "add the two shifted views")],
}
