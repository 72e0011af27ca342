//! The embedding table: lookup and gradient (embedding.wgsl).

use crate::error::Result;
use crate::gpu::abi::EmbedParams;
use crate::gpu::bind::Bind;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{Elems, Kernel};
use crate::gpu::ops::dispatch::{flat_grid, param_dispatch, param_dispatch_as, Dispatch, Traffic};

fn params(n: usize, dim: usize, vocab: usize, accumulate: bool) -> EmbedParams {
    EmbedParams {
        n: n as u32,
        dim: dim as u32,
        vocab: vocab as u32,
        accumulate: accumulate as u32,
    }
}

/// out[n, j] = table[tokens[n], j] for `n` positions of `dim` values.
/// From an f16 table into f16 activations where `half` (mixed precision).
pub(crate) fn embed_forward(
    ctx: &GpuContext,
    (n, dim, vocab): (usize, usize, usize),
    (tokens, table, out): (&dyn Bind, &dyn Bind, &dyn Bind),
    half: bool,
) -> Result<Dispatch> {
    let q = params(n, dim, vocab, false);
    let grid = flat_grid(ctx, n * dim);
    let bufs = [tokens, table, out];
    param_dispatch_as(
        ctx,
        (Kernel::EmbedFwd, Elems::all(half)),
        &[],
        "embed_fwd",
        bytemuck::bytes_of(&q),
        &bufs,
        grid,
    )
}

/// Which rows of the table an embedding gradient writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableRows {
    /// The rows of the tokens a batch holds; the others are left as they are (the
    /// trainer's lazy update zeroes the rows a pass holds, and the last pass's, first).
    Present,
    /// Every row, zero where the batch holds no such token (the dense update's table).
    All,
}

impl TableRows {
    /// Slots of the index's token list for `n` positions over `vocab` tokens.
    fn slots(self, n: usize, vocab: usize) -> usize {
        match self {
            TableRows::Present => n.min(vocab),
            TableRows::All => vocab,
        }
    }
}

/// d_table[v, j] (+)= Σ d_x[p, j] over the positions p of each token v `index` lists
/// ([`token_index`], built for `rows`), in its order. With `accumulate` (a later
/// chunk) the sums are added. `d_x` is [N, dim], or `slices` split-K slices of it one
/// after the other, added in order as each position is read.
pub(crate) fn embed_backward(
    ctx: &GpuContext,
    (n, dim, vocab): (usize, usize, usize),
    (rows, accumulate): (TableRows, bool),
    index: &dyn Bind,
    (d_x, slices): (&dyn Bind, usize),
    d_table: &dyn Bind,
) -> Result<Dispatch> {
    let q = params(n, dim, vocab, accumulate);
    let slices = slices.max(1);
    let m = rows.slots(n, vocab);
    let mut d = param_dispatch(
        ctx,
        Kernel::EmbedBwd,
        &[("SLICES", slices as u32)],
        "embed_bwd",
        bytemuck::bytes_of(&q),
        &[index, d_x, d_table],
        flat_grid(ctx, m * dim),
    )?;
    // Every position's slices once, the index, and the rows written (read too when
    // adding).
    let read = (slices * n * dim + token_index_len(n, vocab, rows)) as u64;
    let written = (m * dim) as u64;
    d.traffic = Traffic::floats(read + written * accumulate as u64, written);
    Ok(d)
}

/// Values of [`token_index`] for `n` positions over `vocab` tokens.
pub(crate) fn token_index_len(n: usize, vocab: usize, rows: TableRows) -> usize {
    3 + 2 * rows.slots(n, vocab) + n
}

/// [D | M | tokens (M) | starts (M + 1) | positions (N)]: D tokens in ascending order
/// in M slots (with [`TableRows::Present`] those present, M = min(N, V); with
/// [`TableRows::All`] every token, D = M = V), where each one's positions start, and
/// the positions grouped by token in order, which is the embedding gradient's summation
/// order (`embed_backward`'s `index`). Slots past D are zero.
pub(crate) fn token_index(tokens: &[u32], vocab: usize, rows: TableRows) -> Vec<u32> {
    let n = tokens.len();
    let m = rows.slots(n, vocab);
    let mut counts = vec![0u32; vocab];
    for &t in tokens {
        counts[t as usize] += 1;
    }
    let mut index = vec![0u32; token_index_len(n, vocab, rows)];
    let (mut d, mut start) = (0usize, 0u32);
    // Where each listed token's positions go, by token.
    let mut next = vec![0u32; vocab];
    for (v, &c) in counts.iter().enumerate() {
        if c > 0 || rows == TableRows::All {
            index[2 + d] = v as u32;
            index[2 + m + d] = start;
            next[v] = start;
            start += c;
            d += 1;
        }
    }
    index[0] = d as u32;
    index[1] = m as u32;
    index[2 + m + d] = start;
    let base = 3 + 2 * m;
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
            &[embed_forward(&ctx, (n, dim, vocab), (&ids, &t, &out), false).unwrap()],
        );
        let want: Vec<f64> = tokens
            .iter()
            .flat_map(|&v| (0..dim).map(move |j| (v as usize * dim + j) as f64 * 0.5))
            .collect();
        close(&read(&ctx, &out, n * dim), &want, "lookup");

        let d_x: Vec<f32> = (0..n * dim).map(|i| (i as f32).sin()).collect();
        let dx = upload(&ctx, &d_x);
        let mut sums = vec![0.0f64; vocab * dim];
        for (p, &v) in tokens.iter().enumerate() {
            for j in 0..dim {
                sums[v as usize * dim + j] += d_x[p * dim + j] as f64;
            }
        }
        // Token 3 is not in the batch: listing the present tokens leaves its row as it
        // was; listing all writes it 0.
        for rows in [TableRows::Present, TableRows::All] {
            let index = token_index(&tokens, vocab, rows);
            let ib = ctx.storage("index", index.len()).unwrap();
            ctx.queue.write_buffer(&ib, 0, bytemuck::cast_slice(&index));
            let d_table = upload(&ctx, &vec![7.0; vocab * dim]);
            let absent = if rows == TableRows::All { 0.0 } else { 7.0 };
            let want: Vec<f64> = (0..vocab * dim)
                .map(|i| if i / dim == 3 { absent } else { sums[i] })
                .collect();
            let bwd = |acc| {
                embed_backward(&ctx, (n, dim, vocab), (rows, acc), &ib, (&dx, 1), &d_table).unwrap()
            };
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

    /// Every row written when the vocabulary is larger than the batch (more slots than
    /// positions), absent tokens 0.
    #[test]
    fn all_rows_of_a_vocabulary_larger_than_the_batch() {
        let Some(ctx) = ctx() else { return };
        let (vocab, dim) = (131, 5);
        let tokens = [130u32, 0, 130];
        let n = tokens.len();
        let d_x: Vec<f32> = (0..n * dim).map(|i| i as f32 + 1.0).collect();
        let index = token_index(&tokens, vocab, TableRows::All);
        assert_eq!(index.len(), token_index_len(n, vocab, TableRows::All));
        let ib = ctx.storage("index", index.len()).unwrap();
        ctx.queue.write_buffer(&ib, 0, bytemuck::cast_slice(&index));
        let (dx, d_table) = (upload(&ctx, &d_x), upload(&ctx, &vec![7.0; vocab * dim]));
        let list = [embed_backward(
            &ctx,
            (n, dim, vocab),
            (TableRows::All, false),
            &ib,
            (&dx, 1),
            &d_table,
        )
        .unwrap()];
        run(&ctx, &list);
        let want: Vec<f64> = (0..vocab * dim)
            .map(|i| match i / dim {
                0 => d_x[dim + i % dim] as f64,
                130 => (d_x[i % dim] + d_x[2 * dim + i % dim]) as f64,
                _ => 0.0,
            })
            .collect();
        close(&read(&ctx, &d_table, vocab * dim), &want, "all rows");
    }
}
