//! The embedding table: lookup and gradient (embedding.wgsl).

use crate::error::Result;
use crate::gpu::abi::EmbedParams;
use crate::gpu::bind::Bind;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::Kernel;
use crate::gpu::ops::dispatch::{flat_grid, param_dispatch, Dispatch};

fn params(n: usize, dim: usize, vocab: usize, accumulate: bool) -> EmbedParams {
    EmbedParams {
        n: n as u32,
        dim: dim as u32,
        vocab: vocab as u32,
        accumulate: accumulate as u32,
    }
}

/// out[n, j] = table[tokens[n], j] for `n` positions of `dim` values.
pub(crate) fn embed_forward(
    ctx: &GpuContext,
    (n, dim, vocab): (usize, usize, usize),
    tokens: &dyn Bind,
    table: &dyn Bind,
    out: &dyn Bind,
) -> Result<Dispatch> {
    let q = params(n, dim, vocab, false);
    let grid = flat_grid(ctx, n * dim);
    let bufs = [tokens, table, out];
    param_dispatch(
        ctx,
        Kernel::EmbedFwd,
        &[],
        "embed_fwd",
        bytemuck::bytes_of(&q),
        &bufs,
        grid,
    )
}

/// d_table[v, j] (+)= Σ d_x[p, j] over the positions p of each token v the batch holds,
/// in the order `index` ([`token_index`]) lists them; other rows are left as they are
/// (the trainer's lazy update zeroes the rows a pass holds, and the last pass's, first).
/// With `accumulate` (a later chunk) the sums are added.
pub(crate) fn embed_backward(
    ctx: &GpuContext,
    (n, dim, vocab): (usize, usize, usize),
    accumulate: bool,
    index: &dyn Bind,
    d_x: &dyn Bind,
    d_table: &dyn Bind,
) -> Result<Dispatch> {
    let q = params(n, dim, vocab, accumulate);
    param_dispatch(
        ctx,
        Kernel::EmbedBwd,
        &[],
        "embed_bwd",
        bytemuck::bytes_of(&q),
        &[index, d_x, d_table],
        flat_grid(ctx, n.min(vocab) * dim),
    )
}

/// Values of [`token_index`] for `n` positions over `vocab` tokens.
pub(crate) fn token_index_len(n: usize, vocab: usize) -> usize {
    2 + 2 * n.min(vocab) + n
}

/// [D | tokens (M) | starts (M + 1) | positions (N)], M = min(N, V): the D tokens
/// present in ascending order, where each one's positions start, and the positions
/// grouped by token in order, which is the embedding gradient's summation order
/// (`embed_backward`'s `index`). Slots past D are zero.
pub(crate) fn token_index(tokens: &[u32], vocab: usize) -> Vec<u32> {
    let n = tokens.len();
    let m = n.min(vocab);
    let mut counts = vec![0u32; vocab];
    for &t in tokens {
        counts[t as usize] += 1;
    }
    let mut index = vec![0u32; token_index_len(n, vocab)];
    let (mut d, mut start) = (0usize, 0u32);
    // Where each present token's positions go, by token.
    let mut next = vec![0u32; vocab];
    for (v, &c) in counts.iter().enumerate() {
        if c > 0 {
            index[1 + d] = v as u32;
            index[1 + m + d] = start;
            next[v] = start;
            start += c;
            d += 1;
        }
    }
    index[0] = d as u32;
    index[1 + m + d] = start;
    let base = 2 + 2 * m;
    for (pos, &t) in tokens.iter().enumerate() {
        index[base + next[t as usize] as usize] = pos as u32;
        next[t as usize] += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::ops::testutil::*;

    /// Lookup, and the gradient summed per token in index order, written then added.
    #[test]
    fn lookup_and_gradient_written_then_accumulated() {
        let Some(ctx) = ctx() else { return };
        let (vocab, dim) = (5, 3);
        let tokens = [4u32, 0, 4, 2, 4, 1, 0];
        let n = tokens.len();
        let table: Vec<f32> = (0..vocab * dim).map(|i| i as f32 * 0.5).collect();
        let ids = ctx.storage("ids", n).unwrap();
        ctx.queue
            .write_buffer(&ids, 0, bytemuck::cast_slice(&tokens));
        let t = upload(&ctx, &table);
        let out = upload(&ctx, &vec![0.0; n * dim]);
        run(
            &ctx,
            &[embed_forward(&ctx, (n, dim, vocab), &ids, &t, &out).unwrap()],
        );
        let want: Vec<f64> = tokens
            .iter()
            .flat_map(|&v| (0..dim).map(move |j| (v as usize * dim + j) as f64 * 0.5))
            .collect();
        close(&read(&ctx, &out, n * dim), &want, "lookup");

        let d_x: Vec<f32> = (0..n * dim).map(|i| (i as f32).sin()).collect();
        let index = token_index(&tokens, vocab);
        let ib = ctx.storage("index", index.len()).unwrap();
        ctx.queue.write_buffer(&ib, 0, bytemuck::cast_slice(&index));
        let dx = upload(&ctx, &d_x);
        let d_table = upload(&ctx, &vec![7.0; vocab * dim]);
        let mut want = vec![0.0f64; vocab * dim];
        for (p, &v) in tokens.iter().enumerate() {
            for j in 0..dim {
                want[v as usize * dim + j] += d_x[p * dim + j] as f64;
            }
        }
        // Token 3 is not in the batch: its row keeps what it held.
        for j in 0..dim {
            want[3 * dim + j] = 7.0;
        }
        let bwd = |acc| embed_backward(&ctx, (n, dim, vocab), acc, &ib, &dx, &d_table).unwrap();
        run(&ctx, &[bwd(false)]);
        close(&read(&ctx, &d_table, vocab * dim), &want, "gradient");
        run(&ctx, &[bwd(true)]);
        let twice: Vec<f64> = want
            .iter()
            .enumerate()
            .map(|(i, v)| if i / dim == 3 { *v } else { 2.0 * v })
            .collect();
        close(&read(&ctx, &d_table, vocab * dim), &twice, "accumulated");
    }
}
