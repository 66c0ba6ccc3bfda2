"""Deep coloring (Kulikov, Yurchenko and Lempitsky, 2018).

The net predicts C colours with a softmax; colour 0 is background. During
training every object takes the colour that suits it best while its halo
avoids that colour (eqs. 1-2); the loss is the log-loss on those colours
(eq. 3). At test time: argmax, connected components of equal colour, a size
threshold tau and an optional same-colour merge radius rho.

Long on purpose: a method is one module (its options, loss, decoder and
preview layers together; see the architecture notes), and deep coloring's
colour assignment, semantic head and merge stage make it the largest one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as connected_label


from .base import DecodeParameter, Instances, Method, PreviewLayer, memo, size_threshold
from .boundary import (BACKGROUND, BOUNDARY, FOREGROUND_THRESHOLD, INTERIOR, INTERIOR_TUNE_VALUES, grown_cores,
                       three_class_loss, three_class_target)
from .components import argmax_channels, class_distances, grow_into, merge_close_components, relabel_by_lookup

COLOR_CHOICES = ("paper", "distinct")
#: cross-entropy weight of the boundary class in the semantic head (the 3-class baseline's default)
SEMANTIC_BOUNDARY_WEIGHT = 5.0

# colours that a preview shows one per channel (background first)
PREVIEW_COLORMAPS = ("gray", "red", "green", "blue", "yellow", "magenta", "cyan", "orange", "bop purple",
                     "bop blue", "bop orange")


@dataclass(frozen=True)
class ColoringOptions:
    """Training options of deep coloring.

    Attributes
    ----------
    n_colors : int
        Number of colours the net may give to objects, background included [C;
        paper: 9]. Too few merges neighbours; too many is harmless (the net
        leaves some unused).
    halo_margin : int
        Width in pixels of the ring (halo) around each object in which no other
        object may take its colour: about one object diameter [m, eq. 1]. The
        paper used 21 px for CVPPP
        leaves, about their mean diameter after downscaling. Rule of thumb:
        about one object diameter, at least the widest gap between objects
        that must be told apart. It is measured in the net's pixels, where
        objects are 30 px across (``TrainingConfig.net_object_diameter``), so
        the default fits every kind of object; scale it with the objects only
        when training at the images' own resolution.
    halo_weight : float
        How strongly the colour choice avoids the colours of neighbouring
        objects' halos [mu, eq. 2; paper: 7]. It weighs the halo term of eq. 2.
    semantic_head : bool
        Also train a background / interior / boundary head and use it to clean
        up the colours when decoding [sec. 4.3]. This is the paper's "separate
        semantic head": three more channels trained with pixel-wise
        cross-entropy on background / interior / boundary (the 3-class
        baseline's target), fused with the colours at test time
        (:meth:`ColoringMethod.decode`).
    semantic_weight : float
        Weight of the semantic head's cross-entropy against the colour loss of
        eqs. (2)-(3). The paper gives none (a plain sum, weight 1); 10 is our
        departure. On the shared layers the colour loss's gradient was 1.5-3
        times the head's after 230-250 steps (E. coli, Usiigaci; on E. coli it
        opposed the head's), and the head, which then decodes the instances,
        came out worse than the 3-class baseline's at the same steps. Adam
        normalises each weight's step, so only the ratio matters: the colour
        channels' own weights learn as fast at any value, while the shared
        layers follow the head. At 15 CPU minutes, beside 3 and the baseline:
        on E. coli 10 scored above the baseline in 3 of 3 runs, where 3 once
        fell to AP 0.665 (baseline 0.850); on Usiigaci both trailed it by
        0.001-0.042. Against 3 alone it is a tie but for that fall, so 10 is
        the safer default; the colours told apart no fewer touching pairs
        than with 3 (docs/benchmarks.md).
    color_choice : {"paper", "distinct"}
        How each object's colour is chosen during training: "paper" or
        "distinct". "paper": eq. (2)
        for every object independently. "distinct": eq. (2) in order of the
        objects' preference, but a colour already taken by a touching
        neighbour (one in the object's halo) is not offered again while
        another is free (:func:`choose_distinct_colors`).
    class_colors : bool
        Models trained on class annotations only: each class owns a subset of the colours and an
        object may only take one of its class's colours (the paper's "coloring with class-specific
        colors", Cityscapes section), the object colours cut into one block of nearly equal size per
        class (:func:`~napari_deepcolor.methods.classes.class_color_owners`). False: all classes share
        all colours and only the class head tells them apart.
    position_input : bool
        Also give the net each pixel's place in the whole image: sin and cos of its coordinates at the
        period ``position_period``, four input channels after the image's. Encoding and tiling:
        :mod:`napari_deepcolor.nets.position`. A departure from the paper, whose net is fully convolutional: a translation-invariant net
        gives identical touching objects identical colours (Novotny et al. 2018, sec. 3.6, "the
        convolutional coloring dilemma"), and at CPU budgets our nets learn colours that mean "inside"
        or "rim", shared by 75-100 % of touching pairs. With their coordinates, neighbours can be told
        apart by where they are. Tiled and whole-image predictions agree: each tile is given its place.
        Such models cannot be exported to bioimage.io (the package's net would not know where a tile lies).
    position_period : float
        Period in pixels of the position input's sin and cos, at the net's scale (objects 30 px across):
        a few object diameters, so that touching neighbours differ in phase while an object spans less
        than a period. Used with ``position_input`` only.
    """

    n_colors: int = 9
    halo_margin: int = 21
    halo_weight: float = 7.0
    semantic_head: bool = True
    semantic_weight: float = 10.0
    color_choice: str = "paper"
    class_colors: bool = True
    position_input: bool = False
    position_period: float = 90.0

    def __post_init__(self):
        from ..errors import DeepColorError

        if not 3 <= self.n_colors <= 64:
            raise DeepColorError(f"n_colors must be in [3, 64] (got {self.n_colors}); the paper uses 9.")
        if not 1 <= self.halo_margin <= 256:
            raise DeepColorError(f"halo_margin must be in [1, 256] px (got {self.halo_margin}).")
        if not 0 <= self.halo_weight <= 100:
            raise DeepColorError(f"halo_weight must be in [0, 100] (got {self.halo_weight}).")
        if not 0 < self.semantic_weight <= 100:
            raise DeepColorError(f"semantic_weight must be in (0, 100] (got {self.semantic_weight}).")
        if not 8 <= self.position_period <= 4096:
            raise DeepColorError(f"position_period must be in [8, 4096] px (got {self.position_period}); "
                                 "a few object diameters (objects are 30 px across at the net's scale).")
        if self.color_choice not in COLOR_CHOICES:
            raise DeepColorError(f"unknown color_choice {self.color_choice!r}; choose one of: "
                                 f"{', '.join(COLOR_CHOICES)}.")


def object_halos(labels: np.ndarray, margin: int, *, ignore: np.ndarray | None = None):
    """Halo pixels of every object, eq. (1): ``dilate(M_k, m) \\ M_k``.

    The dilation is by a Euclidean disk of radius ``margin``. Pixels in
    ``ignore`` are left out.

    Parameters
    ----------
    labels : (H, W) int array, objects 1..K, 0 = background.
    margin : int, m in pixels.

    Returns
    -------
    pixels, objects : (N,) int64 arrays
        Flat pixel index into ``labels`` and the object id (1..K) it is halo of;
        a pixel can be in the halos of several objects.
    """
    height, width = labels.shape
    pixels, objects = [], []
    for k, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        y0, x0 = max(box[0].start - margin, 0), max(box[1].start - margin, 0)
        y1, x1 = min(box[0].stop + margin, height), min(box[1].stop + margin, width)
        inside = labels[y0:y1, x0:x1] == k
        halo = ndi.distance_transform_edt(~inside) <= margin
        halo &= ~inside
        if ignore is not None:
            halo &= ~ignore[y0:y1, x0:x1]
        ys, xs = np.nonzero(halo)
        pixels.append((ys + y0) * width + (xs + x0))
        objects.append(np.full(ys.size, k))
    if not pixels:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(pixels).astype(np.int64), np.concatenate(objects).astype(np.int64)


def choose_colors(object_log_p, halo_log_not_p, halo_weight: float, allowed=None):
    """Eq. (2): per object, the colour c >= 1 maximising
    ``mean_{M_k} log y[c] + mu * mean_{halo_k} log(1 - y[c])``.

    Parameters
    ----------
    object_log_p, halo_log_not_p : (K, C) tensors of the two per-object means.

    allowed : (K, C) bool tensor or None
        With class-specific colours, the colours each object may take (those of its class).

    Returns
    -------
    (K,) long tensor of colours in 1..C-1.
    """
    score = _allowed_only(object_log_p[:, 1:] + halo_weight * halo_log_not_p[:, 1:], allowed)
    return score.argmax(dim=1) + 1


def _allowed_only(score, allowed):
    """The eq. (2) scores (K, C - 1) with the colours an object may not take set to -inf."""
    return score if allowed is None else score.masked_fill(~allowed[:, 1:], float("-inf"))


def choose_distinct_colors(object_log_p, halo_log_not_p, halo_weight: float, neighbours, allowed=None):
    """Eq. (2) with touching neighbours kept apart: a deliberate departure from the paper.

    Objects choose in order of how decided they are (the gap between their best
    and second-best eq. (2) score); each takes its best colour among those not
    already taken by a neighbour that chose before it, or its plain eq. (2)
    colour when all are taken.

    Why: a young net puts nearly all objects in one or two colours; with eq. (2)
    alone every object of a crowd then flees to the same runner-up colour, and
    the loss trains touching objects to share it (measured: 44-53 % of touching
    pairs, docs/benchmarks.md). Here the targets of neighbours always differ
    when there are colours enough, which is what the decoding needs.

    Parameters
    ----------
    object_log_p, halo_log_not_p : (K, C) tensors of the two per-object means of eq. (2).
    neighbours : (M, 2) long tensor of object pairs (0-based) that touch (one in the other's halo).
    allowed : (K, C) bool tensor or None, as for :func:`choose_colors`.

    Returns
    -------
    (K,) long tensor of colours in 1..C-1.
    """
    import torch

    score = _allowed_only(object_log_p[:, 1:] + halo_weight * halo_log_not_p[:, 1:], allowed)
    score = score.detach().cpu().double().numpy()
    colors = score.argmax(axis=1)
    pairs = neighbours.cpu().numpy()
    if pairs.size == 0 or score.shape[1] < 2:
        return torch.as_tensor(colors + 1, device=object_log_p.device)
    adjacency = [[] for _ in range(score.shape[0])]
    for a, b in pairs:
        adjacency[a].append(b)
        adjacency[b].append(a)
    top_two = np.sort(score, axis=1)[:, -2:]
    chosen = np.full(score.shape[0], -1)
    for k in np.argsort(top_two[:, 0] - top_two[:, 1]):  # largest gap first
        taken = chosen[adjacency[k]]
        free = score[k].copy()
        free[taken[taken >= 0]] = -np.inf
        chosen[k] = int(free.argmax()) if np.isfinite(free).any() else colors[k]
    return torch.as_tensor(chosen + 1, device=object_log_p.device)


def touching_pairs(global_id, halo_pixels, halo_objects):
    """(M, 2) unique pairs of 0-based object ids where one lies in the other's halo."""
    import torch

    other = global_id[halo_pixels]
    valid = (other > 0) & (other != halo_objects)
    a, b = halo_objects[valid] - 1, other[valid] - 1
    low, high = torch.minimum(a, b), torch.maximum(a, b)
    n = int(high.max()) + 1 if high.numel() else 1
    key = torch.unique(low * n + high)  # one number per pair: far faster than unique(dim=0) on 10^5 rows
    return torch.stack([key // n, key % n], dim=1)


def _flatten_batch(raw, labels, ignore):
    """Per-pixel log-probabilities (B*H*W, C), batch-global object ids (0 = none) and helpers."""
    import torch
    import torch.nn.functional as F

    batch, n_colors = raw.shape[:2]
    log_p = F.log_softmax(raw.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, n_colors)
    flat_labels = labels.reshape(-1)
    per_image = labels.reshape(batch, -1).amax(dim=1)
    offsets = torch.cumsum(per_image, 0) - per_image  # global id = label + offset of its image
    image_of_pixel = torch.arange(batch, device=raw.device).repeat_interleave(labels[0].numel())
    global_id = torch.where(flat_labels > 0, flat_labels + offsets[image_of_pixel], 0)
    global_id = global_id.masked_fill(ignore.reshape(-1), -1)  # -1: ignored pixel
    return log_p, global_id, image_of_pixel, int(per_image.sum())


def _object_means(values, ids, n_objects):
    """Mean of ``values`` rows (N, C) per object id in 0..n_objects-1: (n_objects, C)."""
    import torch

    sums = torch.zeros(n_objects, values.shape[1], device=values.device, dtype=values.dtype).index_add_(0, ids, values)
    counts = torch.bincount(ids, minlength=n_objects).clamp(min=1).unsqueeze(1)
    return sums / counts


def assign_colors(raw, labels, ignore, halo_pixels, halo_objects, *, halo_weight: float,
                  color_choice: str = "paper", classes=None, n_classes: int = 0):
    """The colour c_k of every object of a batch, eq. (2), and the per-object mean log y.

    Parameters are as for :func:`coloring_loss`. Returns ``(colors, object_log_p)``:
    (K,) colours in 1..C-1 (K = objects of the whole batch) and the (K, C)
    means of log y over each object, the latter differentiable.
    """
    log_p, global_id, _, n_objects = _flatten_batch(raw, labels, ignore)
    allowed = _allowed_colors(global_id, classes, n_classes, n_objects, raw.shape[1])
    return _assign(log_p, global_id, halo_pixels, halo_objects, n_objects, halo_weight, color_choice, allowed)


def _allowed_colors(global_id, classes, n_classes: int, n_objects: int, n_colors: int):
    """(K, C) bool: the colours of each object's class (class-specific colours), or None without classes."""
    import torch

    from .classes import class_color_owners

    if classes is None or not n_classes or not n_objects:
        return None
    inside = global_id > 0
    object_class = torch.zeros(n_objects, dtype=torch.long, device=global_id.device)
    object_class[global_id[inside] - 1] = classes.reshape(-1)[inside].long()  # one class per object
    owners = torch.as_tensor(class_color_owners(n_colors, n_classes), device=global_id.device)
    return owners.unsqueeze(0) == object_class.unsqueeze(1)


def _assign(log_p, global_id, halo_pixels, halo_objects, n_objects: int, halo_weight: float,
            color_choice: str = "paper", allowed=None):
    import torch

    inside = global_id > 0
    object_log_p = _object_means(log_p[inside], global_id[inside] - 1, n_objects)
    with torch.no_grad():
        log_not_p = torch.log1p(-log_p[halo_pixels].exp().clamp(max=1 - 1e-6))
        halo_log_not_p = _object_means(log_not_p, halo_objects - 1, n_objects)
        if color_choice == "distinct":
            neighbours = touching_pairs(global_id, halo_pixels, halo_objects)
            colors = choose_distinct_colors(object_log_p.detach(), halo_log_not_p, halo_weight, neighbours,
                                            allowed)
        else:
            colors = choose_colors(object_log_p.detach(), halo_log_not_p, halo_weight, allowed)
    return colors, object_log_p


def coloring_loss(raw, labels, ignore, halo_pixels, halo_objects, *, halo_weight: float,
                  color_choice: str = "paper", classes=None, n_classes: int = 0):
    """The dynamic colouring loss, eqs. (2)-(3), for a whole batch at once.

    Parameters
    ----------
    raw : (B, C, H, W) logits.
    labels : (B, H, W) long; objects numbered 1..K_b in each patch, 0 background.
    ignore : (B, H, W) bool; excluded from every term.
    halo_pixels, halo_objects : (N,) long; flat index into the batch's B*H*W
        pixels and the batch-global object id (label + number of objects in the
        patches before it) whose halo the pixel is in. Built by
        :meth:`ColoringMethod.collate` from :func:`object_halos`.
    classes : (B, H, W) long or None
        The class id (1..K) of each pixel's object, for class-specific colours; None: one class.
    n_classes : int
        K, the number of classes sharing the colours (:func:`~.classes.class_color_owners`).

    Notes
    -----
    Class-specific colours (the paper's Cityscapes section, "Coloring with class-specific
    colors"): "at training time, the coloring process (2) only considers colors allocated to the
    ground truth class", so eq. (2)'s argmax runs over the object's class's colours only. The halo
    term is unchanged and still counts every pixel of the halo: a neighbour of another class is
    trained towards its own class's colours, so it puts little probability on this object's
    colours and barely constrains the choice; objects of different classes are told apart by
    construction, and the halo only keeps neighbours of the same class apart.

    L = mean_k mean_{p in M_k} -log y[c_k, p] + mean_images mean_{p in bg} -log y[0, p].
    Eq. (3) sums both terms. We average them, so that neither the patch size
    nor the number of objects in a patch sets their balance: the authors'
    code also normalises (background by its pixel count, objects by their
    total pixel count), and with the objects summed our nuclei model reached
    AP 0.20 after 150 iterations against 0.53 with them averaged (BBBC039,
    see docs/benchmarks.md). Each object still counts equally, whatever its
    size, as the per-object mean of eq. (3) intends. The colour choice c_k
    (eq. 2) is not differentiated, as in the paper. All objects of the batch
    are handled by scatter-adds, with no Python loop over objects.
    """
    batch = raw.shape[0]
    log_p, global_id, image_of_pixel, n_objects = _flatten_batch(raw, labels, ignore)
    background = global_id == 0
    bg_mean = _object_means(-log_p[background, :1], image_of_pixel[background], batch)
    loss = bg_mean.mean()
    if n_objects:
        allowed = _allowed_colors(global_id, classes, n_classes, n_objects, raw.shape[1])
        colors, object_log_p = _assign(log_p, global_id, halo_pixels, halo_objects, n_objects, halo_weight,
                                       color_choice, allowed)
        loss = loss - object_log_p.gather(1, colors.unsqueeze(1)).mean()
    return loss


class ColoringMethod(Method):
    name = "coloring"
    title = "Deep coloring"
    paper = "Kulikov, Yurchenko and Lempitsky: Instance Segmentation by Deep Coloring (2018)"
    Options = ColoringOptions
    decode_parameters = (
        size_threshold(help="connected pieces of one colour smaller than this many pixels become background [tau]"),
        DecodeParameter("merge_radius", 0, 0, 100, 1,
                        help="pieces of the same colour at most this many pixels apart become one object, "
                             "for objects split by occlusion; 0 = off [rho]",
                        tune_values=(0, 2, 4, 8, 16)),
        DecodeParameter("interior_threshold", 0.5, 0.05, 0.95, 0.05,
                        help="models with a semantic head: a pixel whose probability of being an object's "
                             "interior is above this (0-1) belongs to an object's core; cores are split by colour",
                        tune_values=INTERIOR_TUNE_VALUES),
        DecodeParameter("split_by_color", 1, 0, 1, 1, integer=True,
                        help="models with a semantic head: 1 = an object is a piece of the foreground of one "
                             "colour (the paper's fusion); 0 = the colours are not used and the cores are grown "
                             "over the foreground, as the 3-class baseline decodes (for colours not yet learnt)",
                        tune_values=(0, 1)),
        FOREGROUND_THRESHOLD,
    )

    def out_channels(self, options) -> int:
        return options.n_colors + (3 if options.semantic_head else 0)

    def position_periods(self, options) -> tuple[float, ...]:
        return (float(options.position_period),) if options.position_input else ()

    def check_classes(self, options, class_names) -> None:
        if class_names and options.class_colors:
            from .classes import class_color_owners

            class_color_owners(options.n_colors, len(class_names))  # enough colours for every class

    def parameters_used(self, options):
        if options is not None and options.semantic_head:
            return self.decode_parameters
        return tuple(p for p in self.decode_parameters
                     if p.name not in ("interior_threshold", "split_by_color", "foreground_threshold"))

    def prepare_targets(self, labels, ignore, options):
        pixels, objects = object_halos(labels, options.halo_margin, ignore=ignore)
        targets = {"labels": labels.astype(np.int64), "ignore": ignore, "halo_pixels": pixels,
                   "halo_objects": objects}
        if options.semantic_head:
            targets["semantic"] = three_class_target(labels)
        return targets

    def collate(self, targets):
        import torch

        labels = np.stack([t["labels"] for t in targets])
        n_pixels = labels[0].size
        object_offset = np.cumsum([0] + [int(t["labels"].max(initial=0)) for t in targets[:-1]])
        pixels = np.concatenate([t["halo_pixels"] + i * n_pixels for i, t in enumerate(targets)])
        objects = np.concatenate([t["halo_objects"] + object_offset[i] for i, t in enumerate(targets)])
        batch = {"labels": torch.from_numpy(labels), "ignore": torch.from_numpy(np.stack([t["ignore"] for t in targets])),
                 "halo_pixels": torch.from_numpy(pixels.astype(np.int64)),
                 "halo_objects": torch.from_numpy(objects.astype(np.int64))}
        if "semantic" in targets[0]:
            batch["semantic"] = torch.from_numpy(np.stack([t["semantic"] for t in targets]))
        return batch

    def loss(self, raw, targets, options):
        """Eqs. (2)-(3) on the colours, plus the semantic head's pixel-wise cross-entropy (sec. 4.3)."""
        colors = raw[:, :options.n_colors]
        class_specific = options.class_colors and "classes" in targets
        loss = coloring_loss(colors, targets["labels"], targets["ignore"], targets["halo_pixels"],
                             targets["halo_objects"], halo_weight=options.halo_weight,
                             color_choice=options.color_choice,
                             classes=targets["classes"] if class_specific else None,
                             n_classes=int(targets["n_classes"]) if class_specific else 0)
        if options.semantic_head:
            loss = loss + options.semantic_weight * three_class_loss(
                raw[:, options.n_colors:], targets["semantic"], targets["ignore"], SEMANTIC_BOUNDARY_WEIGHT)
        return loss

    def foreground(self, output, options=None):
        """Q for the instance CRF: 1 - p(background) of the semantic head if there is one, else of the colours."""
        n_colors = output.shape[0] if options is None else options.n_colors
        return 1.0 - (output[n_colors] if output.shape[0] == n_colors + 3 else output[0])

    def activate(self, raw, options=None):
        """Colour probabilities (softmax over the C colours), then the semantic head's three."""
        import torch

        raw = raw.float()
        if options is None or not options.semantic_head:
            return raw.softmax(dim=1)
        return torch.cat([raw[:, :options.n_colors].softmax(dim=1), raw[:, options.n_colors:].softmax(dim=1)], dim=1)

    def decode(self, output, *, cache=None, options=None, size_threshold=None, merge_radius=None,
               interior_threshold=None, split_by_color=None, foreground_threshold=None) -> Instances:
        """Colour probabilities (C, H, W), and the semantic head's (3, H, W) if any, to instances.

        Stages, each remembered in ``cache`` so a slider re-runs only what follows it:
        pieces of equal colour (no parameter; with a semantic head, of ``interior_threshold`` and ``foreground_threshold``) ->
        merge same-colour pieces whose gap is <= ``merge_radius`` (rho) ->
        drop instances under ``size_threshold`` (tau) pixels and relabel 1..N. With a
        semantic head the first stage makes whole instances (:func:`_fuse`), so the size
        threshold counts the whole instance and a size-threshold move only relabels.

        Notes
        -----
        Without a semantic head the pieces are the connected components of
        the argmax colour (background is colour 0), as in sec. 3.3. With one,
        they follow the paper's fusion (sec. 4.3): connected components of
        the semantic head's object class, split by each pixel's maximal colour;
        the instance score is the mean product of the colour and the semantic
        probabilities. Our semantic head has the baseline's three classes, so a
        piece that holds several *interior* cores (p > ``interior_threshold``) is
        split among them as the baseline splits its foreground: a model that has
        not learnt to separate colours yet still segments as well as the 3-class
        baseline (:func:`_fuse`).

        The paper merges components "if the Hausdorff distance ... is less than
        rho" to rejoin an object split by an occluder. The Hausdorff distance
        grows with the size of the parts, so two halves of a long worm would
        never merge; what the occlusion case needs is the *gap* between the
        parts, the smallest pixel-to-pixel distance, so that is what we use.
        Merging comes before the size threshold so that the pieces of an
        occluded object count towards its size together. Scores are the mean
        probability of the instance's colour (the paper's AP score).
        """
        params = self.resolve_decode_parameters({"size_threshold": size_threshold, "merge_radius": merge_radius,
                                                 "interior_threshold": interior_threshold,
                                                 "split_by_color": split_by_color,
                                                 "foreground_threshold": foreground_threshold})
        n_colors = options.n_colors if options is not None else output.shape[0]
        fused = output.shape[0] == n_colors + 3
        key = (params["interior_threshold"], params["split_by_color"], params["foreground_threshold"]) if fused else ()
        color, components, sizes, prob_sums, mergeable = memo(cache, "components", key, lambda: _color_components(
            output, n_colors, params["interior_threshold"] if fused else None, bool(params["split_by_color"]),
            params["foreground_threshold"]))

        def merge():
            if params["merge_radius"] <= 0 or not mergeable.any():
                return np.arange(sizes.size)
            merge_color = np.where(mergeable[components], color, 0)  # what the cores split stays split
            distances = memo(cache, "distances", key, lambda: class_distances(merge_color))
            return merge_close_components(components, merge_color, params["merge_radius"], distances=distances)

        group = memo(cache, "merge", key + (params["merge_radius"],), merge)
        group_sizes = np.bincount(group, weights=sizes)
        keep = group_sizes[group] >= max(params["size_threshold"], 1)
        keep[0] = False
        labels, lookup = relabel_by_lookup(components, keep, group)
        n = int(lookup.max(initial=0))
        score_sum = np.bincount(lookup, weights=prob_sums, minlength=n + 1)[1:]
        size_sum = np.bincount(lookup, weights=sizes, minlength=n + 1)[1:]
        return Instances(labels, (score_sum / np.maximum(size_sum, 1)).astype(np.float32))

    def blockwise_limitation(self, parameters, options=None):
        if options is not None and options.semantic_head:
            return ("is not implemented for coloring models with a semantic head (their instances are grown "
                    "across block borders: use a model trained with --semantic-head false)")
        if parameters.get("merge_radius", 0) > 0:
            return "does not support merge_radius (pass --merge-radius 0)"
        return None

    def decode_blocks(self, output, ids, *, block, size_threshold, merge_radius=0, interior_threshold=None,
                      split_by_color=1, foreground_threshold=None):
        from .blockwise import label_color_blocks, object_scores, resolve_components

        table = label_color_blocks(output, ids, block=block, size_threshold=size_threshold)
        lookup, count = resolve_components(table, size_threshold=size_threshold)
        return lookup, object_scores(table, lookup, count)

    def preview(self, output, options=None):
        n_colors = output.shape[0] if options is None else options.n_colors
        layers = [PreviewLayer(output[c], f"colour {c}" if c else "background", "image",
                               {"colormap": PREVIEW_COLORMAPS[c % len(PREVIEW_COLORMAPS)], "blending": "additive",
                                "contrast_limits": (0.0, 1.0), "visible": c > 0})
                  for c in range(n_colors)]
        if output.shape[0] == n_colors + 3:
            layers += [PreviewLayer(output[n_colors + INTERIOR], "semantic: interior", "image",
                                    {"colormap": "green", "contrast_limits": (0.0, 1.0), "visible": False}),
                       PreviewLayer(output[n_colors + BOUNDARY], "semantic: boundary", "image",
                                    {"colormap": "magenta", "contrast_limits": (0.0, 1.0), "visible": False})]
        return layers


def _color_components(output: np.ndarray, n_colors: int | None = None, interior_threshold: float | None = None,
                      split_by_color: bool = True, foreground_threshold: float = 0.5):
    """Pieces of equal colour (4-connected): ``(color, components, sizes, score_sums, mergeable)``.

    ``mergeable`` (n + 1,) bool says which components the same-colour merge may join: not the parts of
    a piece that the fusion split among its cores (the cores said they are different objects), and
    none when the colours are left out (``split_by_color`` False).

    Without ``interior_threshold``: components of the argmax over all colours
    (colour 0 = background), each pixel scored by its colour's probability.
    With it (semantic head fusion): components of the semantic interior
    ``p > interior_threshold``, split by the maximal object colour (1..C-1),
    each pixel scored by p(colour) * p(object) (sec. 4.3), the foreground being
    ``1 - p_background > foreground_threshold``; or, without
    ``split_by_color``, the interior's components grown over the foreground,
    the colours left out (the 3-class baseline's decode of the semantic head).
    """
    if interior_threshold is None:
        color, peak = argmax_channels(output if n_colors is None else output[:n_colors])
        components = connected_label(color, background=0, connectivity=1)
    else:
        color, peak = argmax_channels(output[1:n_colors])
        color += 1
        semantic = output[n_colors:]
        peak = peak * (1.0 - semantic[BACKGROUND])
        # the whole instance is made here: a size-threshold move then only relabels
        foreground = semantic[BACKGROUND] < 1.0 - foreground_threshold
        if split_by_color:
            components, split = _fuse(color, semantic[INTERIOR] > interior_threshold, foreground)
        else:
            components = grown_cores(semantic, interior_threshold, foreground_threshold)
            split = np.ones(int(components.max(initial=0)) + 1, bool)
        color = np.where(components > 0, color, 0).astype(color.dtype)
    n = int(components.max(initial=0))
    flat = components.ravel()
    sizes = np.bincount(flat, minlength=n + 1).astype(np.float64)
    prob_sums = np.bincount(flat, weights=peak.ravel(), minlength=n + 1)
    mergeable = np.ones(n + 1, bool) if interior_threshold is None else ~split
    mergeable[0] = False
    return color, components, sizes, prob_sums, mergeable


def _fuse(object_color: np.ndarray, interior: np.ndarray, foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fusion's instances (H, W), 1..N: pieces of the foreground of one maximal colour, each
    split among the interior cores it holds; and (N + 1,) bool, True for the parts of a split piece.

    A piece (4-connected, of one colour ``object_color``, over ``foreground``) is an instance, as in
    the paper's fusion (sec. 4.3: components of the semantic mask split by the maximal colour). A
    piece that holds two or more interior cores (its connected components of ``interior``) is split
    among them, each pixel to its nearest core within the piece: the baseline's rule, so touching
    objects that took one colour are still split where the semantic head sees a boundary, and a young
    model whose colours are all alike segments as the baseline does. A piece with no core (a thin
    rod, whose interior the head has not learnt) stays an instance of its own.
    """
    pieces = connected_label(np.where(foreground | interior, object_color, 0), background=0, connectivity=1)
    cores = connected_label(np.where(interior, pieces, 0), background=0, connectivity=1)  # each within one piece
    n_pieces = int(pieces.max(initial=0))
    core_sizes = np.bincount(cores.ravel())
    piece_of_core = np.rint(np.bincount(cores.ravel(), weights=pieces.ravel()) / np.maximum(core_sizes, 1))
    shared = np.bincount(piece_of_core[1:].astype(np.int64), minlength=n_pieces + 1) >= 2  # to split among cores
    shared[0] = False
    if not shared.any():
        return pieces, np.zeros(n_pieces + 1, bool)
    in_shared = shared[pieces]
    split = grow_into(np.where(in_shared, cores, 0), in_shared, steps=None, regions=pieces)
    fused = np.where(in_shared, split + n_pieces, pieces)
    used = np.bincount(fused.ravel()) > 0
    used[0] = False
    new_id = np.cumsum(used) * used  # ids 1..N
    return new_id[fused], np.concatenate([[False], np.flatnonzero(used) > n_pieces])
