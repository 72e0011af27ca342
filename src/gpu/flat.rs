//! The flat layout of a model's tensors: one buffer per role (values, gradients, each
//! optimiser moment) with every tensor at an aligned offset, so the gradient norm and
//! the optimiser run once over the whole buffer (PyTorch's fused Adam) and a
//! data-parallel reduction can send the gradients in one call.
//!
//! A model whose tensors do not fit one storage binding is split into segments at tensor
//! boundaries; each segment is its own buffer and takes its own update dispatches.

use crate::error::Result;
use crate::gpu::bind::Range;
use crate::gpu::context::{value_bytes, GpuContext, UNIFORM_WINDOW};

/// Tensor offsets are multiples of this many f32 values (256 bytes, the largest storage
/// and uniform offset alignment WebGPU lets an adapter ask for). The padding between
/// tensors stays zero: the update leaves a zero value with a zero gradient at zero.
pub(crate) const ALIGN: usize = 64;

/// Where each tensor lies: `places[i] = (segment, first value)`; `segments[s]` is the
/// segment's length in values (padding included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub places: Vec<(usize, usize)>,
    pub segments: Vec<usize>,
}

impl Layout {
    /// Tensors of `lens` values in order, a segment holding at most `capacity` values
    /// (a tensor longer than that gets a segment of its own, which the buffer's size
    /// check then refuses with the tensor's name). Tensor `alone` gets a segment of its
    /// own (the embedding table, whose update is not the dense one).
    #[cfg(test)]
    pub(crate) fn new(lens: &[usize], capacity: usize, alone: Option<usize>) -> Self {
        Self::aligned(lens, capacity, alone, ALIGN)
    }

    /// [`Layout::new`] with tensors at multiples of `align` values.
    fn aligned(lens: &[usize], capacity: usize, alone: Option<usize>, align: usize) -> Self {
        let mut places = Vec::with_capacity(lens.len());
        let mut segments: Vec<usize> = Vec::new();
        for (i, &n) in lens.iter().enumerate() {
            let padded = n.max(1).div_ceil(align) * align;
            let last = segments.len().wrapping_sub(1);
            let joins = alone != Some(i) && alone.is_none_or(|a| a + 1 != i);
            match segments.last_mut() {
                Some(end) if joins && *end + padded <= capacity => {
                    places.push((last, *end));
                    *end += padded;
                }
                _ => {
                    places.push((segments.len(), 0));
                    segments.push(padded);
                }
            }
        }
        Layout { places, segments }
    }

    /// The layout of `lens` on `ctx`: segments as long as one storage binding allows,
    /// less the slack a uniform window past a tensor's end reads.
    pub(crate) fn for_device(ctx: &GpuContext, lens: &[usize], alone: Option<usize>) -> Self {
        Self::for_device_as(ctx, lens, alone, false)
    }

    /// [`Layout::for_device`]; with `mirror`, every offset is also a multiple of 256
    /// bytes in an f16 copy of the same layout (twice [`ALIGN`] values), so that the f32
    /// values and their f16 copies share the tensors' places (mixed precision).
    pub(crate) fn for_device_as(
        ctx: &GpuContext,
        lens: &[usize],
        alone: Option<usize>,
        mirror: bool,
    ) -> Self {
        let align = if mirror { 2 * ALIGN } else { ALIGN };
        let bytes = ctx.storage_limit().saturating_sub(UNIFORM_WINDOW);
        Self::aligned(lens, (bytes / 4) as usize / align * align, alone, align)
    }

    /// The segment of tensor `i`.
    pub(crate) fn segment_of(&self, i: usize) -> usize {
        self.places[i].0
    }
}

/// One role's buffers in a [`Layout`].
#[derive(Debug)]
pub(crate) struct Flat {
    pub buffers: Vec<wgpu::Buffer>,
    /// f16 values (an f16 copy), else f32.
    pub half: bool,
}

impl Flat {
    /// Zeroed buffers for every segment of `layout`, labelled `label`.
    pub(crate) fn new(ctx: &GpuContext, label: &str, layout: &Layout) -> Result<Self> {
        Self::new_as(ctx, label, layout, false)
    }

    /// [`Flat::new`] of f16 values where `half` (the f16 copy of mixed precision).
    pub(crate) fn new_as(
        ctx: &GpuContext,
        label: &str,
        layout: &Layout,
        half: bool,
    ) -> Result<Self> {
        let buffers = layout
            .segments
            .iter()
            .enumerate()
            .map(|(s, &n)| ctx.storage_as(&format!("{label}_{s}"), n, half))
            .collect::<Result<Vec<_>>>()?;
        Ok(Flat { buffers, half })
    }

    /// Tensor `i` of `len` values.
    pub(crate) fn range(&self, layout: &Layout, i: usize, len: usize) -> Range {
        let (s, first) = layout.places[i];
        Range {
            buffer: self.buffers[s].clone(),
            offset: value_bytes(self.half) * first as u64,
            len,
            half: self.half,
        }
    }

    /// Every tensor of `lens`, in order.
    pub(crate) fn ranges(&self, layout: &Layout, lens: &[usize]) -> Vec<Range> {
        lens.iter()
            .enumerate()
            .map(|(i, &n)| self.range(layout, i, n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_sit_at_aligned_offsets_and_split_at_the_capacity() {
        let l = Layout::new(&[1, 64, 65, 3], 1 << 20, None);
        assert_eq!(l.places, vec![(0, 0), (0, 64), (0, 128), (0, 256)]);
        assert_eq!(l.segments, vec![320]);
        // A segment holds at most 256 values: the third tensor starts a new one, and
        // a tensor past the capacity gets its own.
        let l = Layout::new(&[100, 100, 100, 600, 1], 256, None);
        assert_eq!(l.places, vec![(0, 0), (0, 128), (1, 0), (2, 0), (3, 0)]);
        assert_eq!(l.segments, vec![256, 128, 640, 64]);
        // A tensor alone: nothing joins its segment, before or after.
        let l = Layout::new(&[10, 10, 10, 10], 1 << 20, Some(1));
        assert_eq!(l.places, vec![(0, 0), (1, 0), (2, 0), (2, 64)]);
        assert_eq!(l.segment_of(3), 2);
    }
}
