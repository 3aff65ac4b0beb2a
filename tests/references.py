"""Independent reference implementations that tests compare the library against."""


def dense_target(indices, weights, num_bins=313):
    """Scatter a sparse soft encoding (B, k, H, W) into a dense (B, num_bins, H, W) distribution."""
    B, _, H, W = indices.shape
    out = weights.new_zeros(B, num_bins, H, W)
    return out.scatter_(1, indices, weights)
