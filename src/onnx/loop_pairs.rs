//! Keras `Bidirectional` GRUs written as two Loops: the forward one reads the sequence,
//! the backward one reads it reversed (`ReverseSequence` over full lengths), and their
//! outputs meet in a `Concat` on the feature axis, forward first (merge_mode="concat"),
//! the backward sequence reversed back. Only that wiring reads as one bidirectional
//! layer; a reversed Loop alone (go_backwards) or another merge is refused.

use std::collections::HashSet;

use crate::error::Result;
use crate::io::onnx::{GraphProto, NodeProto};

use super::consts::{attr, Consts};
use super::loop_step::LoopLayer;

/// Whether `name` is computed from shapes and constants alone (no tensor's values).
fn from_shapes(name: &str, consts: &mut Consts) -> Result<bool> {
    let mut todo = vec![name.to_string()];
    let mut seen = HashSet::new();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) || consts.get(&n)?.is_some() {
            continue;
        }
        match consts.producer(&n).map(|(n, _)| n) {
            Some(node) if node.op_type == "Shape" => {}
            Some(node) => todo.extend(node.input.iter().filter(|s| !s.is_empty()).cloned()),
            None => return Ok(false),
        }
    }
    Ok(true)
}

/// A `ReverseSequence` of `name` over whole rows: time axis 0, batch axis 1, lengths
/// computed from shapes.
fn whole_reversal<'a>(node: &'a NodeProto, consts: &mut Consts) -> Result<Option<&'a str>> {
    let axis = |a: &str, default: i64| attr(node, a).map_or(default, |a| a.i);
    if node.op_type != "ReverseSequence"
        || axis("time_axis", 0) != 0
        || axis("batch_axis", 1) != 1
        || node.input.len() != 2
        || !from_shapes(&node.input[1], consts)?
    {
        return Ok(None);
    }
    Ok(Some(&node.input[0]))
}

/// How a Loop reads its sequence.
pub(super) enum Reads {
    Forward,
    /// Reversed, from this sequence.
    Reversed(String),
    /// Through some other reversal (a partial one, a Slice with negative steps).
    Other,
}

/// How the Loop reading `seq` reads it: plainly, reversed over whole rows, or through a
/// reversal gru-engine does not read. Looks back to the layer below or the graph's
/// inputs.
pub(super) fn reads(seq: &str, consts: &mut Consts) -> Result<Reads> {
    let mut name = seq.to_string();
    let mut first = None;
    // Bounded: an Identity cycle ends here too.
    for _ in 0..=consts.node_count() {
        let Some(node) = consts.producer(&name).map(|(n, _)| n) else {
            break;
        };
        if node.op_type == "Identity" {
            name = node.input.first().cloned().unwrap_or_default();
            continue;
        }
        first = whole_reversal(node, consts)?;
        break;
    }
    if let Some(source) = first {
        return Ok(match reversed(source, consts)? {
            true => Reads::Other,
            false => Reads::Reversed(source.to_string()),
        });
    }
    Ok(match reversed(seq, consts)? {
        true => Reads::Other,
        false => Reads::Forward,
    })
}

/// Whether `name` comes from a reversal (ReverseSequence, or a Slice whose steps are not
/// all positive constants), looking back to the layer below or the graph's inputs.
fn reversed(name: &str, consts: &mut Consts) -> Result<bool> {
    let mut todo = vec![name.to_string()];
    let mut seen = HashSet::new();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        let Some(node) = consts.producer(&n).map(|(n, _)| n) else {
            continue;
        };
        match node.op_type.as_str() {
            // Reversing a layer's output back into time order belongs to the layer below.
            "ReverseSequence" if of_layer_output(&node.input[0], consts) => {}
            "ReverseSequence" => return Ok(true),
            "Slice" if node.input.get(4).is_some_and(|s| !s.is_empty()) => {
                let steps = consts.get(&node.input[4])?;
                if !steps.is_some_and(|s| s.data.iter().all(|&v| v > 0.0)) {
                    return Ok(true);
                }
                todo.push(node.input[0].clone());
            }
            "Loop" | "GRU" | "Scan" => {}
            _ => todo.extend(node.input.iter().filter(|s| !s.is_empty()).cloned()),
        }
    }
    Ok(false)
}

/// Whether `name` is a Loop's or GRU's output, through Identity and Transpose.
fn of_layer_output(name: &str, consts: &Consts) -> bool {
    let mut n = name.to_string();
    for _ in 0..=consts.node_count() {
        let Some(node) = consts.producer(&n).map(|(n, _)| n) else {
            return false;
        };
        match node.op_type.as_str() {
            "Loop" | "GRU" => return true,
            "Identity" | "Transpose" => n = node.input.first().cloned().unwrap_or_default(),
            _ => return false,
        }
    }
    false
}

/// Where a Concat input comes from: one of the Loop's outputs (its final state, or its
/// per-step states, or their last step), with the feature axis it ends on and the
/// whole-row reversals on the way.
struct Trace {
    state: bool,
    axis: usize,
    reversals: usize,
}

fn trace(name: &str, layer: &LoopLayer, consts: &mut Consts) -> Result<Option<Trace>> {
    // Back to the Loop's output through Identity, Transpose, whole-row reversals and the
    // Slice + Squeeze that take the last step.
    let mut chain = Vec::new();
    let mut n = name.to_string();
    let mut state = None;
    for _ in 0..=consts.node_count() {
        if n == layer.state_out {
            state = Some(true);
            break;
        }
        if layer.scan_outs.contains(&n) {
            state = Some(false);
            break;
        }
        let Some(node) = consts.producer(&n).map(|(n, _)| n) else {
            return Ok(None);
        };
        let next = match node.op_type.as_str() {
            "Identity" | "Transpose" | "Slice" | "Squeeze" => node.input.first().cloned(),
            "ReverseSequence" => whole_reversal(node, consts)?.map(str::to_string),
            _ => None,
        };
        let Some(next) = next else { return Ok(None) };
        chain.push(node);
        n = next;
    }
    // Not reached within as many steps as there are nodes: a cycle.
    let Some(state) = state else { return Ok(None) };
    // Forward again, following the axes: [B, H] or [T, B, H].
    let ints =
        |node: &NodeProto, k: usize, name: &str, consts: &mut Consts| -> Result<Option<Vec<i64>>> {
            Ok(match node.input.get(k).filter(|s| !s.is_empty()) {
                Some(i) => consts
                    .get(i)?
                    .map(|a| a.data.iter().map(|&v| v as i64).collect()),
                None => attr(node, name).map(|a| a.ints.clone()),
            })
        };
    let (mut rank, mut axis, mut time) = if state { (2, 1, None) } else { (3, 2, Some(0)) };
    let (mut reversals, mut last_step, mut squeezed) = (0, false, false);
    for node in chain.iter().rev() {
        let norm = |a: i64, r: usize| if a < 0 { a + r as i64 } else { a };
        match node.op_type.as_str() {
            "Transpose" => {
                let perm: Vec<usize> = match attr(node, "perm") {
                    Some(a) => a.ints.iter().map(|&p| p as usize).collect(),
                    None => (0..rank).rev().collect(),
                };
                if perm.len() != rank {
                    return Ok(None);
                }
                let Some(k) = perm.iter().position(|&p| p == axis) else {
                    return Ok(None);
                };
                axis = k;
                time = time.and_then(|t| perm.iter().position(|&p| p == t));
            }
            "ReverseSequence" => {
                if time != Some(0) || axis == 0 || last_step {
                    return Ok(None);
                }
                reversals += 1;
            }
            // The last step of the per-step states: [-1:] along time, then squeezed.
            "Slice" => {
                let (starts, ends) = (
                    ints(node, 1, "starts", consts)?,
                    ints(node, 2, "ends", consts)?,
                );
                let axes = ints(node, 3, "axes", consts)?.unwrap_or_else(|| vec![0]);
                let steps = ints(node, 4, "steps", consts)?.unwrap_or_else(|| vec![1]);
                let last = matches!(
                    (starts.as_deref(), ends.as_deref(), axes.as_slice(), steps.as_slice()),
                    (Some(&[-1]), Some(&[e]), &[a], &[1]) if e >= i32::MAX as i64 && Some(norm(a, rank) as usize) == time
                );
                if !last || last_step {
                    return Ok(None);
                }
                last_step = true;
            }
            "Squeeze" => {
                let axes = ints(node, 1, "axes", consts)?;
                let Some(&[a]) = axes.as_deref() else {
                    return Ok(None);
                };
                let a = norm(a, rank) as usize;
                if !last_step || squeezed || Some(a) != time || a == axis {
                    return Ok(None);
                }
                squeezed = true;
                rank -= 1;
                axis -= usize::from(axis > a);
                time = None;
            }
            _ => {}
        }
    }
    if last_step != squeezed {
        return Ok(None);
    }
    Ok(Some(Trace {
        state: state || squeezed,
        axis,
        reversals,
    }))
}

/// Whether the outputs of `forward` and `backward` (which reads the sequence reversed)
/// meet in a Concat on the feature axis, forward first, the backward per-step states
/// reversed back into time order.
pub(super) fn concatenated(
    graph: &GraphProto,
    forward: &LoopLayer,
    backward: &LoopLayer,
    consts: &mut Consts,
) -> Result<bool> {
    for node in graph.node.iter().filter(|n| n.op_type == "Concat") {
        if node.input.len() != 2 {
            continue;
        }
        let (Some(f), Some(b)) = (
            trace(&node.input[0], forward, consts)?,
            trace(&node.input[1], backward, consts)?,
        ) else {
            continue;
        };
        let rank = if f.state { 2 } else { 3 };
        let a = attr(node, "axis").map_or(0, |a| a.i);
        let a = if a < 0 { a + rank } else { a };
        let fits = f.state == b.state
            && a >= 0
            && a as usize == f.axis
            && f.axis == b.axis
            && f.reversals == 0
            && b.reversals == usize::from(!b.state);
        if fits {
            return Ok(true);
        }
    }
    Ok(false)
}
