//! Reference backward pass (BPTT).

use super::forward::CpuForward;
use super::math::{matvec_t_acc, outer_acc};
use crate::config::GruVariant;
use crate::error::{check_len, Result};
use crate::real::Real;
use crate::sequence::{swap_leading_axes, GruGrads};
use crate::weights::GruWeights;

// Long by choice: BPTT as the math, in one reading order (see docs/design.md §3).
/// Gradients of a loss L given dL/d output (same layout as the forward's output) and,
/// optionally, dL/d h_n [layers·dirs, B, H].
pub fn backward<R: Real>(
    w: &GruWeights<R>,
    fwd: &CpuForward<R>,
    d_output: &[R],
    d_h_n: Option<&[R]>,
) -> Result<GruGrads<R>> {
    let cfg = w.config;
    let (t_len, b_len, h) = (fwd.seq_len, fwd.batch, cfg.hidden_size);
    let nd = cfg.num_directions();
    let bh = b_len * h;
    let dims = if fwd.batch_first {
        "[B, T, dirs*H]"
    } else {
        "[T, B, dirs*H]"
    };
    check_len("d_output", d_output.len(), &[t_len, b_len, nd * h], dims)?;
    if let Some(d) = d_h_n {
        check_len(
            "d_h_n",
            d.len(),
            &[cfg.num_layers * nd, b_len, h],
            "[layers*dirs, B, H]",
        )?;
    }
    let one = R::from_f64(1.0);
    // Gradient of the current layer's output, time-major [T, B, dirs·H].
    let mut d_out = if fwd.batch_first {
        swap_leading_axes(d_output, b_len, t_len, nd * h)
    } else {
        d_output.to_vec()
    };
    let mut d_weights = GruWeights::<R>::zeros(cfg);
    let mut d_h0 = vec![R::default(); cfg.num_layers * nd * bh];
    for layer in (0..cfg.num_layers).rev() {
        let i_len = cfg.layer_input_size(layer);
        let x = &fwd.layer_inputs[layer];
        let mut d_x = vec![R::default(); t_len * b_len * i_len];
        for d in 0..nd {
            let idx = layer * nd + d;
            let p = &w.dirs[idx];
            let c = &fwd.caches[idx];
            let g = &mut d_weights.dirs[idx];
            let mut dh = match d_h_n {
                Some(dhn) => dhn[idx * bh..(idx + 1) * bh].to_vec(),
                None => vec![R::default(); bh],
            };
            for s in (0..t_len).rev() {
                let t = if d == 0 { s } else { t_len - 1 - s };
                for b in 0..b_len {
                    if t >= fwd.lengths[b] {
                        continue; // frozen step: dh passes through unchanged
                    }
                    let row = s * bh + b * h;
                    let h_prev = &c.hs[row..row + h];
                    let mut dgx = vec![R::default(); 3 * h];
                    let mut dgh = vec![R::default(); 3 * h];
                    let mut dh_prev = vec![R::default(); h];
                    for j in 0..h {
                        let k = row + j;
                        let (r, z, n, extra) = (c.r[k], c.z[k], c.n[k], c.extra[k]);
                        let dh_t = dh[b * h + j] + d_out[(t * b_len + b) * nd * h + d * h + j];
                        let dn = dh_t * (one - z);
                        let dz = dh_t * (h_prev[j] - n);
                        let da_n = dn * (one - n * n);
                        dgx[h + j] = dz * z * (one - z);
                        dgh[h + j] = dgx[h + j];
                        dgx[2 * h + j] = da_n;
                        dh_prev[j] = dh_t * z;
                        if cfg.variant == GruVariant::ResetAfter {
                            // extra = W_hn h + b_hn
                            dgh[2 * h + j] = da_n * r;
                            dgx[j] = da_n * extra * r * (one - r);
                            dgh[j] = dgx[j];
                        } else {
                            dgh[2 * h + j] = da_n;
                        }
                    }
                    if cfg.variant == GruVariant::ResetBefore {
                        // n's pre-activation saw W_hn (r*h): route its gradient through r and h.
                        let mut d_rh = vec![R::default(); h];
                        matvec_t_acc(&p.w_hh[2 * h * h..], &dgh[2 * h..], &mut d_rh);
                        for j in 0..h {
                            let r = c.r[row + j];
                            dgx[j] = d_rh[j] * h_prev[j] * r * (one - r);
                            dgh[j] = dgx[j];
                            dh_prev[j] += d_rh[j] * r;
                        }
                        outer_acc(&mut g.w_hh[..2 * h * h], &dgh[..2 * h], h_prev);
                        outer_acc(
                            &mut g.w_hh[2 * h * h..],
                            &dgh[2 * h..],
                            &c.extra[row..row + h],
                        );
                        matvec_t_acc(&p.w_hh[..2 * h * h], &dgh[..2 * h], &mut dh_prev);
                    } else {
                        outer_acc(&mut g.w_hh, &dgh, h_prev);
                        matvec_t_acc(&p.w_hh, &dgh, &mut dh_prev);
                    }
                    let xr = (t * b_len + b) * i_len;
                    outer_acc(&mut g.w_ih, &dgx, &x[xr..xr + i_len]);
                    matvec_t_acc(&p.w_ih, &dgx, &mut d_x[xr..xr + i_len]);
                    for k in 0..3 * h {
                        g.b_ih[k] += dgx[k];
                        g.b_hh[k] += dgh[k];
                    }
                    dh[b * h..(b + 1) * h].copy_from_slice(&dh_prev);
                }
            }
            d_h0[idx * bh..(idx + 1) * bh].copy_from_slice(&dh);
        }
        d_out = d_x;
    }
    d_weights.zero_biases_if_absent();
    let d_input = if fwd.batch_first {
        swap_leading_axes(&d_out, t_len, b_len, cfg.input_size)
    } else {
        d_out
    };
    Ok(GruGrads {
        d_input,
        d_h0,
        d_weights,
    })
}
