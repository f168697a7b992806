"""Image resampling (Sec. 3 of the paper): coordinates, reconstruction phi, samplers.

``I_hat = phi(G + SAMPLER)`` (Eq. 4), as pure functions on tensors plus thin modules:

* :mod:`~irad.resample.coordinates`: the pixel-centre grid ``G`` (pixel units, (row, col),
  ``G[i, j] = (i, j)``) and conversions to the normalised LIIF and ``grid_sample`` conventions;
* :mod:`~irad.resample.reconstruction`: nearest (Eq. 6) and bilinear (Eq. 5) reconstruction
  queried at real coordinates, with a documented border rule;
* :mod:`~irad.resample.samplers`: spatially invariant (Eq. 7) and spatially variant (Eq. 8)
  shifts, seedable;
* :mod:`~irad.resample.resampler`: :func:`resample` and the :class:`Resampler` module.

Example:
    >>> import torch
    >>> from irad.resample import Resampler, SpatiallyInvariantSampler
    >>> Resampler("bilinear", SpatiallyInvariantSampler(1.5))(torch.rand(1, 3, 32, 32)).shape
    torch.Size([1, 3, 32, 32])
"""

from irad.resample.coordinates import (
    from_grid_sample_xy,
    make_grid,
    normalized_to_pixel,
    pixel_to_normalized,
    to_grid_sample_xy,
)
from irad.resample.reconstruction import (
    PADDING_MODES,
    RECONSTRUCTIONS,
    bilinear_reconstruct,
    canonical_reconstruction,
    nearest_reconstruct,
    reconstruct,
)
from irad.resample.resampler import Resampler, resample
from irad.resample.samplers import (
    SAMPLERS,
    Sampler,
    SpatiallyInvariantSampler,
    SpatiallyVariantSampler,
    build_sampler,
    canonical_sampler,
    make_generator,
    spatially_invariant_shifts,
    spatially_variant_shifts,
)

__all__ = [
    "PADDING_MODES",
    "RECONSTRUCTIONS",
    "SAMPLERS",
    "Resampler",
    "Sampler",
    "SpatiallyInvariantSampler",
    "SpatiallyVariantSampler",
    "bilinear_reconstruct",
    "build_sampler",
    "canonical_reconstruction",
    "canonical_sampler",
    "from_grid_sample_xy",
    "make_generator",
    "make_grid",
    "nearest_reconstruct",
    "normalized_to_pixel",
    "pixel_to_normalized",
    "reconstruct",
    "resample",
    "spatially_invariant_shifts",
    "spatially_variant_shifts",
    "to_grid_sample_xy",
]
