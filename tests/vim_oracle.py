"""An independent re-derivation of Vim / Vim-F from REFERENCE.md section 5, for the tests' oracles.

Written from the equations, not from the package: explicit loops over time for the causal conv and
the scan, explicit flips for the backward direction, upstream's "add -> norm -> mixer" block order
(the residual handed from block to block), and a state dict with the official key names as the only
input. Meant for float64 on tiny shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """out[:, e, t] = bias[e] + sum_j weight[e, 0, j] * x[:, e, t - (k - 1) + j] (zero before the start)."""
    b, e, length = x.shape
    k = weight.shape[-1]
    out = bias[None, :, None].expand(b, e, length).clone()
    for t in range(length):
        for j in range(k):
            s = t - (k - 1) + j
            if s >= 0:
                out[:, :, t] += weight[:, 0, j] * x[:, :, s]
    return out


def one_direction(x: torch.Tensor, z: torch.Tensor, sd: dict, p: str, suffix: str) -> torch.Tensor:
    """One direction of the mixer on x, z (b, E, L) already in that direction's order."""
    a_log = sd[f"{p}A_log"] if suffix == "" else sd[f"{p}A_b_log"]
    d_skip = sd[f"{p}D{suffix}"]
    n = a_log.shape[1]
    u = F.silu(causal_depthwise_conv(x, sd[f"{p}conv1d{suffix}.weight"], sd[f"{p}conv1d{suffix}.bias"]))
    x_dbl = torch.einsum("ce,bel->bcl", sd[f"{p}x_proj{suffix}.weight"], u)
    r = x_dbl.shape[1] - 2 * n
    dt, bb, cc = x_dbl[:, :r], x_dbl[:, r : r + n], x_dbl[:, r + n :]
    delta = F.softplus(
        torch.einsum("er,brl->bel", sd[f"{p}dt_proj{suffix}.weight"], dt)
        + sd[f"{p}dt_proj{suffix}.bias"][:, None]
    )
    a = -torch.exp(a_log)  # (E, N)
    state = u.new_zeros(u.shape[0], u.shape[1], n)
    ys = []
    for t in range(u.shape[2]):
        state = (
            torch.exp(delta[:, :, t, None] * a) * state
            + (delta[:, :, t] * u[:, :, t])[..., None] * bb[:, None, :, t]
        )
        ys.append((state * cc[:, None, :, t]).sum(-1) + d_skip * u[:, :, t])
    return torch.stack(ys, dim=-1) * F.silu(z)


def mixer(h: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    """The bidirectional mixer on tokens h (b, L, C) with the parameters under prefix ``p``."""
    xz = h @ sd[f"{p}in_proj.weight"].T
    e = xz.shape[-1] // 2
    x, z = xz[..., :e].transpose(1, 2), xz[..., e:].transpose(1, 2)
    y_fwd = one_direction(x, z, sd, p, "")
    y_bwd = one_direction(x.flip(-1), z.flip(-1), sd, p, "_b")
    return ((y_fwd + y_bwd.flip(-1)) / 2).transpose(1, 2) @ sd[f"{p}out_proj.weight"].T


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _layer_norm_channels(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-6):
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight[:, None, None] + bias[:, None, None]


def conv_stem(x: torch.Tensor, sd: dict, stride: int = 16) -> torch.Tensor:
    """Vim-F's stem -> tokens (b, M, C)."""
    p = "patch_embed.cnn_downsample_layers"
    x = F.conv2d(x, sd[f"{p}.0.0.weight"], sd[f"{p}.0.0.bias"], stride=stride // 4, padding=3)
    x = _layer_norm_channels(x, sd[f"{p}.0.1.weight"], sd[f"{p}.0.1.bias"])
    for i in (1, 2):
        x = F.conv2d(x, sd[f"{p}.{i}.0.weight"], sd[f"{p}.{i}.0.bias"], stride=2)
        x = _layer_norm_channels(x, sd[f"{p}.{i}.1.weight"], sd[f"{p}.{i}.1.bias"])
        x = F.gelu(F.conv2d(x, sd[f"{p}.{i}.2.weight"], sd[f"{p}.{i}.2.bias"]))
    return x.flatten(2).transpose(1, 2)


def official_logits(sd: dict, x: torch.Tensor, depth: int, stride: int = 16) -> torch.Tensor:
    """Vim (patch conv + position embedding) or Vim-F (conv stem; ``sup_c`` = V1, ``layers.i.stack`` = V2)
    logits for images x, one sample at a time (upstream's V1 fftshift is right for a batch of one)."""
    outs = []
    for xi in x.split(1):
        if "patch_embed.proj.weight" in sd:
            w = sd["patch_embed.proj.weight"]
            t = F.conv2d(xi, w, sd["patch_embed.proj.bias"], stride=stride).flatten(2).transpose(1, 2)
        else:
            t = conv_stem(xi, sd, stride)
            if "patch_embed.sup_c" in sd:
                c = sd["patch_embed.sup_c"]
                t = c[0] * t + c[1] * torch.fft.fftshift(torch.fft.fft2(t, norm="ortho")).abs()
        m = t.shape[1]
        t = torch.cat([t[:, : m // 2], sd["cls_token"], t[:, m // 2 :]], dim=1)
        if "pos_embed" in sd:
            t = t + sd["pos_embed"]
        residual, hidden = None, t
        for i in range(depth):
            residual = hidden if residual is None else residual + hidden
            h = rms_norm(residual, sd[f"layers.{i}.norm.weight"])
            if f"layers.{i}.stack" in sd:
                s = sd[f"layers.{i}.stack"]
                h = s[0] * h + s[1] * torch.fft.fft2(h, norm="ortho").abs()
                h = h @ sd[f"layers.{i}.mlp.weight"].T + sd[f"layers.{i}.mlp.bias"]
            hidden = mixer(h, sd, f"layers.{i}.mixer.")
        final = rms_norm(residual + hidden, sd["norm_f.weight"])
        outs.append(final[:, m // 2] @ sd["head.weight"].T + sd["head.bias"])
    return torch.cat(outs)


def official_state_dict(
    depth: int, dim: int, d_state: int, classes: int, grid: int | None, stem_dims=None, version=None, seed=0
) -> dict:
    """A random state dict with the official key names and shapes of REFERENCE.md section 5 (float64).

    ``grid``: side of the position embedding's patch grid (None: Vim-F, no position embedding);
    ``stem_dims``: Vim-F's conv stem widths (None: Vim's 16x16 patch conv); ``version`` "v1" / "v2".
    """
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    e, r, n = 2 * dim, -(-dim // 16), d_state
    sd = {}
    if stem_dims is None:
        sd["patch_embed.proj.weight"] = rnd(dim, 3, 16, 16, scale=0.05)
        sd["patch_embed.proj.bias"] = rnd(dim)
    else:
        p = "patch_embed.cnn_downsample_layers"
        d0, d1, d2 = stem_dims
        sd[f"{p}.0.0.weight"], sd[f"{p}.0.0.bias"] = rnd(d0, 3, 7, 7, scale=0.1), rnd(d0)
        sd[f"{p}.0.1.weight"], sd[f"{p}.0.1.bias"] = 1 + rnd(d0), rnd(d0)
        for i, (a, b) in ((1, (d0, d1)), (2, (d1, d2))):
            sd[f"{p}.{i}.0.weight"], sd[f"{p}.{i}.0.bias"] = rnd(b, a, 2, 2), rnd(b)
            sd[f"{p}.{i}.1.weight"], sd[f"{p}.{i}.1.bias"] = 1 + rnd(b), rnd(b)
            sd[f"{p}.{i}.2.weight"], sd[f"{p}.{i}.2.bias"] = rnd(b, b, 1, 1), rnd(b)
        if version == "v1":
            sd["patch_embed.sup_c"] = 1 + rnd(2)
    sd["cls_token"] = rnd(1, 1, dim)
    if grid is not None:
        sd["pos_embed"] = rnd(1, grid * grid + 1, dim)
    for i in range(depth):
        p = f"layers.{i}."
        sd[p + "norm.weight"] = 1 + rnd(dim)
        if version == "v2" and i < 8:
            sd[p + "mlp.weight"], sd[p + "mlp.bias"], sd[p + "stack"] = rnd(dim, dim), rnd(dim), 1 + rnd(2)
        sd[p + "mixer.in_proj.weight"] = rnd(2 * e, dim)
        for suffix in ("", "_b"):
            sd[p + f"mixer.conv1d{suffix}.weight"] = rnd(e, 1, 4)
            sd[p + f"mixer.conv1d{suffix}.bias"] = rnd(e)
            sd[p + f"mixer.x_proj{suffix}.weight"] = rnd(r + 2 * n, e)
            sd[p + f"mixer.dt_proj{suffix}.weight"] = rnd(e, r)
            sd[p + f"mixer.dt_proj{suffix}.bias"] = rnd(e) - 2.0
        sd[p + "mixer.A_log"] = torch.log(torch.arange(1, n + 1, dtype=torch.float64)).repeat(e, 1) + rnd(
            e, n
        )
        sd[p + "mixer.A_b_log"] = torch.log(torch.arange(1, n + 1, dtype=torch.float64)).repeat(e, 1) + rnd(
            e, n
        )
        sd[p + "mixer.D"], sd[p + "mixer.D_b"] = 1 + rnd(e), 1 + rnd(e)
        sd[p + "mixer.out_proj.weight"] = rnd(dim, e)
    sd["norm_f.weight"] = 1 + rnd(dim)
    sd["head.weight"], sd["head.bias"] = rnd(classes, dim), rnd(classes)
    return sd
