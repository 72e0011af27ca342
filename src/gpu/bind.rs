//! What an op binds: a whole buffer, or a range of one (a tensor inside the flat
//! parameter, gradient and optimiser-state buffers, `crate::gpu::flat`).

use std::num::NonZeroU64;

use crate::gpu::context::value_bytes;

/// A storage or uniform binding. Kernels index from the binding's start, so the same
/// kernel reads a tensor whether it owns its buffer or sits at an offset in a flat one.
pub(crate) trait Bind {
    /// The buffer the binding lies in.
    fn raw(&self) -> &wgpu::Buffer;
    /// The binding's first byte in [`Self::raw`].
    fn start(&self) -> u64;
    /// The binding as a bind group resource.
    fn binding(&self) -> wgpu::BindingResource<'_>;
    /// Bytes from the binding's start to the end of its buffer (what a window past the
    /// tensor's end may still read).
    fn room(&self) -> u64 {
        self.raw().size() - self.start()
    }
    /// Bytes the binding covers (for the plan's traffic counts).
    fn bytes(&self) -> u64;
    /// Whether it holds f16 values (a whole buffer: f32).
    fn half(&self) -> bool {
        false
    }
}

impl Bind for wgpu::Buffer {
    fn raw(&self) -> &wgpu::Buffer {
        self
    }
    fn start(&self) -> u64 {
        0
    }
    fn binding(&self) -> wgpu::BindingResource<'_> {
        self.as_entire_binding()
    }
    fn bytes(&self) -> u64 {
        self.size()
    }
}

/// `len` values of `buffer` from byte `offset` (a multiple of 256, which every adapter
/// accepts as a storage or uniform binding offset): f32 values, or f16 ones where
/// `half`.
#[derive(Debug, Clone)]
pub(crate) struct Range {
    pub buffer: wgpu::Buffer,
    pub offset: u64,
    pub len: usize,
    pub half: bool,
}

impl Range {
    /// The first `len` values of `buffer` (f16 where `half`).
    pub(crate) fn whole(buffer: &wgpu::Buffer, len: usize, half: bool) -> Self {
        Range {
            buffer: buffer.clone(),
            offset: 0,
            len,
            half,
        }
    }

    /// Bytes of one value.
    pub(crate) fn value_bytes(&self) -> u64 {
        value_bytes(self.half)
    }

    /// The range's first value as an index into its buffer's values (of its type).
    pub(crate) fn first(&self) -> usize {
        (self.offset / self.value_bytes()) as usize
    }
}

impl Bind for Range {
    fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }
    fn start(&self) -> u64 {
        self.offset
    }
    fn binding(&self) -> wgpu::BindingResource<'_> {
        // Whole 16-byte words: the tensors' padding (`flat::ALIGN`) holds them.
        let bytes = (self.value_bytes() * self.len as u64).max(16).div_ceil(16) * 16;
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: NonZeroU64::new(bytes),
        })
    }
    fn bytes(&self) -> u64 {
        self.value_bytes() * self.len as u64
    }
    fn half(&self) -> bool {
        self.half
    }
}

/// Two tensors of one buffer bound as one range, from `a`'s start to `b`'s end, and
/// where `b` starts in it (in values): how a step kernel binds both directions of a
/// bidirectional layer at once. `None` where they lie in different buffers or out of
/// order, or where the span would bind more than `limit` bytes.
pub(crate) fn span(a: &Range, b: &Range, limit: u64) -> Option<(Range, u32)> {
    if a.buffer != b.buffer || b.offset < a.offset || a.half != b.half {
        return None;
    }
    let gap = (b.offset - a.offset) / a.value_bytes();
    let len = gap as usize + b.len;
    if (a.value_bytes() * len as u64).div_ceil(16) * 16 > limit {
        return None;
    }
    let range = Range {
        buffer: a.buffer.clone(),
        offset: a.offset,
        len,
        half: a.half,
    };
    Some((range, u32::try_from(gap).ok()?))
}
