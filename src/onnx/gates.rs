//! The one difference in layout between PyTorch's GRU parameters and ONNX's.

/// Gate blocks of `block` values swapped between PyTorch's r, z, n and ONNX's z, r, h
/// (the same swap both ways).
pub(crate) fn swap_rz(v: &[f32], block: usize) -> Vec<f32> {
    [&v[block..2 * block], &v[..block], &v[2 * block..3 * block]].concat()
}
