"""User colour hints (Zhang, Zhu et al., "Real-Time User-Guided Image Colorization with
Learned Deep Priors", SIGGRAPH 2017): points where the colour is known, as network input.

A hint map is two tensors at the network's input size: ``hint_ab`` (B, 2, H, W), the hinted ab
in Lab units (0 elsewhere), and ``mask`` (B, 1, H, W), 1 where a hint is given and 0 elsewhere.
The network sees L, ``hint_ab`` and ``mask`` stacked as four channels.

In training the hints are simulated from the truth (:class:`HintSampler`); a user's hints come
from points in the photo's own pixels (:class:`Hint`, :func:`render_hints`).
"""

from dataclasses import dataclass

import torch

from . import color

LOCATIONS = ("gauss", "uniform")


@dataclass(frozen=True)
class HintSampler:
    """Simulated hints, drawn from an image's own ab, as in the paper's training.

    Per image, points are added while a uniform draw is below ``1 - p``: the number of points
    is geometric, P(n) = p (1 - p)^n for n = 0, 1, ... (so P(no hint) = p; mean (1 - p) / p, 7
    for the paper's p = 1/8), cut at ``max_points``. Each point is a square patch whose side
    is drawn uniformly from ``patch[0]..patch[1]`` pixels, centred at a pixel drawn from a
    normal at the image centre with standard deviation ``spread`` times the side (clamped into
    the image; "gauss"), or uniformly ("uniform"). A patch's hint is the mean ab of the truth
    over the patch (the part inside the image). A later point overwrites an earlier one where
    they overlap.

    Attributes:
        p: the geometric distribution's stopping probability, in (0, 1].
        max_points: the most points an image gets.
        patch: (smallest, largest) patch side in pixels.
        location: "gauss" or "uniform".
        spread: the normal's standard deviation as a share of the image side ("gauss").
    """

    p: float = 1 / 8
    max_points: int = 64
    patch: tuple = (1, 9)
    location: str = "gauss"
    spread: float = 0.25

    def __post_init__(self):
        problems = []
        if not 0 < self.p <= 1:
            problems.append(f"p={self.p!r}: in (0, 1] (the paper: 0.125)")
        if not (isinstance(self.max_points, int) and 0 <= self.max_points <= 255):
            problems.append(f"max_points={self.max_points!r}: an integer in 0..255")
        lo, hi = (tuple(self.patch) + (None, None))[:2]
        if not (len(self.patch) == 2 and isinstance(lo, int) and isinstance(hi, int)
                and 1 <= lo <= hi):
            problems.append(f"patch={list(self.patch)!r}: two integers 1 <= smallest <= largest")
        if self.location not in LOCATIONS:
            problems.append(f"location={self.location!r}: one of {' | '.join(LOCATIONS)}")
        if not self.spread > 0:
            problems.append(f"spread={self.spread!r}: must be > 0")
        if problems:
            raise ValueError("bad hint settings: " + "; ".join(problems))

    @classmethod
    def from_config(cls, h):
        """From a config's ``hints`` section."""
        return cls(p=h["p"], max_points=h["max_points"], patch=tuple(h["patch"]),
                   location=h["location"], spread=h["spread"])

    def count(self, batch, generator=None, device=None):
        """Geometric numbers of points, (B,) long on ``device``; no host synchronisation."""
        go_on = torch.rand(batch, self.max_points, generator=generator, device=device) < 1 - self.p
        return go_on.long().cumprod(1).sum(1)

    def __call__(self, ab, generator=None, points=None):
        """Simulated hints for a batch of true ab maps.

        Args:
            ab: (B, 2, H, W) the truth's ab in Lab units.
            generator: a ``torch.Generator`` on ``ab``'s device, or None for the global one.
            points: None to draw each image's number of points (training); an int to give
                every image exactly that many (the evaluation's fixed counts).

        Returns:
            hint_ab (B, 2, H, W) and mask (B, 1, H, W), in ``ab``'s dtype and device.
        """
        if points is None:
            n = self.count(ab.shape[0], generator, ab.device)
            return self._paint(ab, self._boxes(ab, self.max_points, generator), n)
        return self.reveal(ab, [points], generator)[points]

    def reveal(self, ab, counts, generator=None):
        """Hints with exactly n points per image for each n in ``counts``, nested: the set for
        n is the first n points of one draw, so more points only add to fewer.

        Returns:
            {n: (hint_ab, mask)}.
        """
        if any(not 0 <= n <= 255 for n in counts):
            raise ValueError(f"points must be in 0..255, got {list(counts)}")
        m = max(counts)
        boxes = self._boxes(ab, m, generator) if m else None
        out = {}
        for n in counts:
            if n == 0:
                out[n] = torch.zeros_like(ab), torch.zeros_like(ab[:, :1])
            else:
                full = torch.full((ab.shape[0],), n, device=ab.device)
                out[n] = self._paint(ab, [b[:, :n] for b in boxes], full)
        return out

    def _boxes(self, ab, m, generator):
        """m patches per image: (y0, y1, x0, x1), each (B, m) long, clipped to the image."""
        B, _, H, W = ab.shape
        dev = ab.device
        lo, hi = self.patch
        side = lo + (torch.rand(B, m, generator=generator, device=dev) * (hi - lo + 1)).long()
        side = side.clamp_(max=hi)
        cy, cx = (self._centres(B, m, size, generator, dev) for size in (H, W))
        # The patch [c - (s - 1) // 2, c - (s - 1) // 2 + s), clipped to the image.
        y0 = cy - (side - 1) // 2
        x0 = cx - (side - 1) // 2
        return (y0.clamp(0, H - 1), (y0 + side).clamp(1, H), x0.clamp(0, W - 1),
                (x0 + side).clamp(1, W))

    def _paint(self, ab, boxes, n):
        """The hint maps of the first n[b] boxes of each image b."""
        B, _, H, W = ab.shape
        dev = ab.device
        y0, y1, x0, x1 = boxes
        m = y0.shape[1]
        if m == 0:
            return torch.zeros_like(ab), torch.zeros_like(ab[:, :1])
        active = torch.arange(m, device=dev) < n[:, None]  # (B, M)
        ys = torch.arange(H, device=dev)
        xs = torch.arange(W, device=dev)
        rows = ((ys >= y0[..., None]) & (ys < y1[..., None])).to(ab.dtype)  # (B, M, H)
        cols = ((xs >= x0[..., None]) & (xs < x1[..., None])).to(ab.dtype)  # (B, M, W)
        area = rows.sum(-1) * cols.sum(-1)  # (B, M), at least 1
        means = torch.einsum("bmh,bchw,bmw->bmc", rows, ab, cols) / area[..., None]  # (B, M, 2)
        cover = (rows[..., :, None] * cols[..., None, :]).bool() & active[..., None, None]
        order = torch.arange(1, m + 1, device=dev, dtype=torch.uint8).view(1, m, 1, 1)
        last = torch.where(cover, order, torch.zeros((), dtype=torch.uint8, device=dev))
        last = last.amax(1).long()  # (B, H, W): 1 + the last point covering a pixel, 0 if none
        table = torch.cat([torch.zeros_like(means[:, :1]), means], 1)  # (B, M + 1, 2)
        hint_ab = table.gather(1, last.view(B, -1, 1).expand(-1, -1, 2))  # (B, H*W, 2)
        hint_ab = hint_ab.transpose(1, 2).reshape(B, 2, H, W)
        mask = (last > 0).to(ab.dtype)[:, None]
        return hint_ab, mask

    def _centres(self, B, m, size, generator, dev):
        """(B, M) long pixel coordinates along one side of ``size`` pixels."""
        if self.location == "uniform":
            c = torch.rand(B, m, generator=generator, device=dev) * size
        else:
            c = size / 2 + self.spread * size * torch.randn(B, m, generator=generator, device=dev)
        return c.floor().long().clamp_(0, size - 1)


def hint_input(L, hint_ab, mask):
    """The network's input: L (B, 1, H, W), hint ab (B, 2, H, W), mask (B, 1, H, W) stacked."""
    return torch.cat([L, hint_ab.to(L.dtype), mask.to(L.dtype)], dim=1)


def no_hints(L):
    """The input with no hint anywhere: the network's automatic mode."""
    return hint_input(L, torch.zeros_like(L).expand(-1, 2, -1, -1), torch.zeros_like(L))


# --- a user's hints ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Hint:
    """One user hint: a point in the photo's own pixels and the colour it should have.

    Attributes:
        x, y: the point, in pixels of the photo at its full size (0 <= x < width, 0 <= y <
            height; fractional values are allowed).
        ab: (a, b) in Lab units.
        size: the patch side in working-size pixels (the network's own grid), at least 1.
    """

    x: float
    y: float
    ab: tuple
    size: int = 1


def hex_to_ab(text):
    """'#rrggbb' -> (a, b) of that sRGB colour in Lab; ValueError if malformed."""
    s = text.strip()
    if not (len(s) == 7 and s[0] == "#"):
        raise ValueError(f"{text!r} is not a colour like '#c03020'")
    try:
        rgb = [int(s[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    except ValueError:
        raise ValueError(f"{text!r} is not a colour like '#c03020'") from None
    lab = color.rgb_to_lab(torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1))
    return float(lab[0, 1, 0, 0]), float(lab[0, 2, 0, 0])


def ab_to_hex(ab, L=60.0):
    """(a, b) at lightness ``L`` -> '#rrggbb' (clipped into sRGB), for showing a colour."""
    lab = torch.tensor([L, ab[0], ab[1]], dtype=torch.float64).view(1, 3, 1, 1)
    rgb = color.lab_to_rgb(lab).clamp(0, 1).view(3)
    return "#" + "".join(f"{round(float(v) * 255):02x}" for v in rgb)


def working_point(x, y, photo_size, work_size):
    """A photo pixel (x, y) -> the working-grid pixel (column, row) holding it.

    Both grids span the same image: the photo pixel's centre, (x + 0.5) * w / W on the
    working grid, falls in that working pixel.
    """
    (W, H), (w, h) = photo_size, work_size
    col = min(max(int((x + 0.5) * w / W), 0), w - 1)
    row = min(max(int((y + 0.5) * h / H), 0), h - 1)
    return col, row


def render_hints(hints, photo_size, work_size, device=None):
    """User hints -> (hint_ab (1, 2, h, w), mask (1, 1, h, w)) at the working size.

    Args:
        hints: :class:`Hint` list, in the photo's own pixels; later hints win where patches
            overlap.
        photo_size: (width, height) of the photo; work_size: (w, h) of the network's input.
    """
    w, h = work_size
    hint_ab = torch.zeros(1, 2, h, w, device=device)
    mask = torch.zeros(1, 1, h, w, device=device)
    for hint in hints:
        col, row = working_point(hint.x, hint.y, photo_size, work_size)
        lo = (hint.size - 1) // 2
        r0, c0 = max(row - lo, 0), max(col - lo, 0)
        r1, c1 = min(row - lo + hint.size, h), min(col - lo + hint.size, w)
        hint_ab[0, 0, r0:r1, c0:c1] = hint.ab[0]
        hint_ab[0, 1, r0:r1, c0:c1] = hint.ab[1]
        mask[0, 0, r0:r1, c0:c1] = 1
    return hint_ab, mask


# --- the paper's metric: quality against the number of revealed points ---------------------------

POINTS = (0, 1, 2, 5, 10, 20, 50)


@torch.no_grad()
def evaluate_hints(model, sampler, loader, device, points=POINTS, class_weights=None, seed=0):
    """Colour quality of a hints model against the number of points revealed from the truth.

    For every image, one draw of ``max(points)`` simulated points (the checkpoint's own
    sampler: patch sizes and locations as in training) is revealed in order: the n-point
    hints are the first n of them, so every count sees the same images and more points only
    add hints. The metrics are those of :class:`splitbrain.metrics.ColorMetrics` at full
    resolution, with the all-grey prediction as a baseline.

    Args:
        model: an ECCV16 with ``hints=True``, in eval mode on ``device``.
        sampler: a :class:`HintSampler`.
        loader: batches of sRGB images (B, 3, H, W) (or (images, labels) pairs).
        points: the counts to reveal.
        class_weights: (313,) weights for the rebalanced AuC, or None.
        seed: seeds the draw (the same seed gives the same points).

    Returns:
        {"grey": {metric: value}, n: {metric: value} for n in points}.
    """
    from .metrics import ColorMetrics
    from .objectives import update_colour_metrics

    generator = torch.Generator(device=device).manual_seed(seed)
    metrics = {n: {"model": ColorMetrics(), "grey": ColorMetrics()} for n in points}
    for batch in loader:
        rgb = (batch[0] if isinstance(batch, (list, tuple)) else batch).to(device)
        lab = color.rgb_to_lab(color.to_float_rgb(rgb))
        L, ab = lab[:, :1], lab[:, 1:]
        for n, (hint_ab, mask) in sampler.reveal(ab, list(points), generator).items():
            out = model(hint_input(L, hint_ab, mask))
            pred_ab = out[:, :2].float() * color.AB_SCALE
            update_colour_metrics(metrics[n], pred_ab, ab, L, class_weights)
    results = {"grey": metrics[points[0]]["grey"].compute()}
    for n in points:
        results[n] = metrics[n]["model"].compute()
    return results


# --- hint files (tools/colorize.py --hints) -------------------------------------------------------

HINT_FORMAT = ('{"photo.jpg": [{"x": 120, "y": 45, "color": "#c03020"}, '
               '{"x": 300, "y": 80, "ab": [40, 30], "size": 3}]}')
DEFAULT_SIZE = 3  # a hint's patch side in working-size pixels when the file gives none


class HintFileError(ValueError):
    """A hints file that cannot be used: the message names the file, the entry and the fix."""


def parse_hint(entry, where):
    """One hint entry (a dict from JSON or the page) -> :class:`Hint`; HintFileError if bad.

    ``where`` names the entry in messages (e.g. 'hints.json: "photo.jpg" entry 2').
    """
    need = ('needs "x" and "y" (pixels of the photo), and "color" ("#rrggbb") or "ab" '
            '([a, b] in Lab units)')
    if not isinstance(entry, dict):
        raise HintFileError(f"{where}: {need}; got {entry!r}")
    unknown = set(entry) - {"x", "y", "color", "ab", "size"}
    if unknown:
        raise HintFileError(f"{where}: unknown key(s) {', '.join(sorted(map(repr, unknown)))}; "
                            f"an entry {need}, and optionally \"size\"")
    x, y = entry.get("x"), entry.get("y")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
               for v in (x, y)):
        raise HintFileError(f"{where}: {need}; x={x!r}, y={y!r}")
    if ("color" in entry) == ("ab" in entry):
        raise HintFileError(f"{where}: give one of \"color\" (\"#rrggbb\") or \"ab\" ([a, b]), "
                            f"not {'both' if 'color' in entry else 'neither'}")
    if "color" in entry:
        if not isinstance(entry["color"], str):
            raise HintFileError(f"{where}: color {entry['color']!r} is not a colour like "
                                f"\"#c03020\" (red, green, blue in hexadecimal)")
        try:
            ab = hex_to_ab(entry["color"])
        except ValueError:
            raise HintFileError(f"{where}: color {entry['color']!r} is not a colour like "
                                f"\"#c03020\" (red, green, blue in hexadecimal)") from None
    else:
        ab = entry["ab"]
        if not (isinstance(ab, list) and len(ab) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                        and -128 <= v <= 128 for v in ab)):
            raise HintFileError(f"{where}: ab {ab!r} must be two numbers [a, b] in -128..128 "
                                f"(Lab units), e.g. [40, 30]")
        ab = (float(ab[0]), float(ab[1]))
    size = entry.get("size", DEFAULT_SIZE)
    if not (isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 64):
        raise HintFileError(f"{where}: size {size!r} must be a whole number of working-size "
                            f"pixels in 1..64 (default {DEFAULT_SIZE})")
    return Hint(float(x), float(y), ab, size)


def check_inside(hints, photo_size, where):
    """Every hint's point inside a photo of ``photo_size`` = (width, height) pixels."""
    W, H = photo_size
    for i, hint in enumerate(hints, 1):
        if not (0 <= hint.x < W and 0 <= hint.y < H):
            raise HintFileError(
                f"{where} entry {i}: the point (x={hint.x:g}, y={hint.y:g}) is outside the photo "
                f"({W}x{H} pixels: 0 <= x < {W}, 0 <= y < {H}); give coordinates in the "
                f"photo's own pixels, from its top-left corner")


def load_hint_file(path, photos):
    """Read a hints file for the photos being colorized.

    The file is JSON: an object mapping each photo (its path as given, its path below a
    folder given, or its file name) to a list of hints, or a bare list when one photo is
    given. Each hint: ``{"x": .., "y": .., "color": "#rrggbb"}`` or ``"ab": [a, b]``, and
    optionally ``"size"`` (patch side in working-size pixels, default 3).

    Args:
        path: the file.
        photos: [(photo path, name it may be given by)] for every photo being colorized.

    Returns:
        {photo path: [Hint, ...]}.

    Raises:
        HintFileError: naming the file, the entry and the fix.
    """
    import json
    from pathlib import Path

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HintFileError(f"hints file not found: {path}; check the path given to --hints "
                             f"(the format is {HINT_FORMAT})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise HintFileError(f"cannot read the hints file {path} ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise HintFileError(f"{path} is not valid JSON ({err}); the format is {HINT_FORMAT}") \
            from None
    if isinstance(data, list):
        if len(photos) != 1:
            raise HintFileError(f"{path} holds a bare list of hints, which fits one photo; "
                                f"{len(photos)} photos are being colorized: map each photo's "
                                f"name to its hints, {HINT_FORMAT}")
        data = {str(photos[0][1]): data}
    if not isinstance(data, dict):
        raise HintFileError(f"{path} must hold an object mapping photos to hints, "
                            f"{HINT_FORMAT}")
    out = {}
    for key, entries in data.items():
        matches = [src for src, name in photos
                   if key in (str(src), str(name), Path(src).name)]
        if not matches:
            names = ", ".join(str(name) for _, name in photos[:5])
            raise HintFileError(f"{path}: hints for {key!r}, a photo not given; the photos "
                                f"are {names}{' ...' if len(photos) > 5 else ''}; name one of "
                                f"them or drop the entry")
        if len(set(matches)) > 1:
            raise HintFileError(f"{path}: {key!r} names {len(matches)} photos; use the path "
                                f"as given on the command line")
        if not isinstance(entries, list):
            raise HintFileError(f"{path}: {key!r} must map to a list of hints, "
                                f"{HINT_FORMAT}")
        hints = [parse_hint(e, f"{path}: {key!r} entry {i}") for i, e in enumerate(entries, 1)]
        out.setdefault(matches[0], []).extend(hints)
    return out
