//! GRU layers written as a `Loop`. tf2onnx rewrites a Keras GRU into an ONNX `GRU` node
//! only for Keras 2's reset_after=True layers with bias; the others (reset_after=False,
//! no bias, and every Keras 3 GRU, also through Keras 3's own ONNX export) become a
//! `Loop` whose body computes one step in MatMul/Add/Split/Slice/Sigmoid/Tanh/Mul/Sub
//! ops. The body is read here as algebra over the step's input x and the carried state
//! h (affine forms x·W + h·U + b, their sigmoids, products and sums), and the layer is
//! taken only when the new state is exactly a GRU's, z ⊙ h + (1 − z) ⊙ tanh(n), with n
//! in one of the two variants, or that step under a Keras mask. Any other op or form is
//! refused, naming it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use crate::config::GruVariant;
use crate::error::{GruError, Result};
use crate::io::bad;
use crate::io::onnx::{data_type, GraphProto, NodeProto};
use crate::weights::DirWeights;

use super::consts::{attr, Arr, Consts};

/// Where an affine form's rows come from.
#[derive(Clone, Debug)]
enum Src {
    /// The step's input x_t [B, I].
    X,
    /// The carried state h [B, H].
    H,
    /// r ⊙ h, where r is the sigmoid of this form (itself of x and h only).
    GatedH(Rc<Lin>),
}

impl PartialEq for Src {
    fn eq(&self, other: &Src) -> bool {
        match (self, other) {
            (Src::X, Src::X) | (Src::H, Src::H) => true,
            (Src::GatedH(a), Src::GatedH(b)) => same(a, b),
            _ => false,
        }
    }
}

/// Equal forms, without comparing the matrices of one shared form with themselves.
fn same(a: &Rc<Lin>, b: &Rc<Lin>) -> bool {
    Rc::ptr_eq(a, b) || **a == **b
}

/// Σ src·M + bias, [B, n]; each M is [k, n] row-major. Matrices are shared between the
/// forms that hold them, so reading a form again copies none.
#[derive(Clone, Debug, PartialEq)]
struct Lin {
    n: usize,
    terms: Vec<(Src, usize, Rc<[f64]>)>,
    bias: Rc<[f64]>,
    /// Whether a bias was added (zero or not): the layer has one.
    biased: bool,
}

impl Lin {
    /// The values a copy of this form's matrices and bias would hold.
    fn size(&self) -> usize {
        self.terms.iter().map(|(_, _, m)| m.len()).sum::<usize>() + self.n
    }

    fn cols(&self, from: usize, to: usize) -> Lin {
        let n = self.n;
        let cut = |m: &[f64], k: usize| -> Rc<[f64]> {
            (0..k)
                .flat_map(|r| m[r * n + from..r * n + to].iter().copied())
                .collect()
        };
        Lin {
            n: to - from,
            terms: self
                .terms
                .iter()
                .map(|(s, k, m)| (s.clone(), *k, cut(m, *k)))
                .collect(),
            bias: self.bias[from..to].into(),
            biased: self.biased,
        }
    }

    fn plus(mut self, other: Lin) -> Option<Lin> {
        if self.n != other.n {
            return None;
        }
        for (s, k, m) in other.terms {
            match self.terms.iter_mut().find(|(t, tk, _)| *t == s && *tk == k) {
                Some((_, _, mine)) => {
                    *mine = mine.iter().zip(m.iter()).map(|(a, b)| a + b).collect()
                }
                None => self.terms.push((s, k, m)),
            }
        }
        self.bias = self
            .bias
            .iter()
            .zip(other.bias.iter())
            .map(|(a, b)| a + b)
            .collect();
        self.biased |= other.biased;
        Some(self)
    }

    /// Adds a bias row, [n] or [1, n].
    fn plus_bias(mut self, c: &Arr) -> Option<Lin> {
        if c.data.len() != self.n || c.dims.last() != Some(&self.n) {
            return None;
        }
        self.bias = self.bias.iter().zip(&c.data).map(|(a, b)| a + b).collect();
        self.biased = true;
        Some(self)
    }

    /// The matrix of the one term whose source `is`, and its row count.
    fn only(&self, is: impl Fn(&Src) -> bool) -> Option<(usize, &[f64])> {
        let mut found = self.terms.iter().filter(|(s, _, _)| is(s));
        let (_, k, m) = found.next()?;
        found.next().is_none().then_some((*k, &m[..]))
    }
}

/// A value of the body, symbolically.
#[derive(Clone, Debug, PartialEq)]
enum Sym {
    Const(Arr),
    /// The step index (from 0, one per iteration).
    Step,
    /// The step's row of a sequence from the enclosing graph: x_t where it meets the
    /// input weights, else a mask.
    Row(String),
    /// The negation of a mask row.
    NotRow(String),
    H,
    Lin(Lin),
    Sigmoid(Rc<Lin>),
    /// 1 − sigmoid(form).
    OneMinus(Rc<Lin>),
    // Shared, not copied: a body that adds a value to itself 30 times is a chain of 30
    // nodes, not a tree of 2^30.
    Tanh(Rc<Sym>),
    Mul(Rc<Sym>, Rc<Sym>),
    Add(Rc<Sym>, Rc<Sym>),
}

/// One Loop layer: its direction's weights in gru-engine's layout.
pub(super) struct LoopLayer {
    /// The enclosing graph's sequence [T, B, I] the Loop reads a row of per step.
    pub seq: String,
    /// The Loop's output holding the final state [B, H].
    pub state_out: String,
    /// The Loop's scan outputs (the states of every step, [T, B, H], among them).
    pub scan_outs: Vec<String>,
    pub input: usize,
    pub hidden: usize,
    pub variant: GruVariant,
    pub bias: bool,
    pub dir: DirWeights,
}

/// What errors about Loops add.
pub(super) const LOOP_HINT: &str = "gru-engine reads a Loop only where it is a GRU layer as tf2onnx writes Keras' (for other Keras layers, save the layer's weights and use --format keras)";

/// The GRU layer computed by the Loop `node`, or an error naming what in its body is not
/// a GRU step.
pub(super) fn loop_layer(node: &NodeProto, outer: &mut Consts, path: &Path) -> Result<LoopLayer> {
    let name = if node.name.is_empty() {
        "Loop"
    } else {
        node.name.as_str()
    };
    let what = |msg: String| bad(path, format!("Loop node `{name}`: {msg}; {LOOP_HINT}"));
    let body = attr(node, "body")
        .and_then(|a| a.g.as_deref())
        .ok_or_else(|| what("no body".into()))?;
    let carried = node.input.len().saturating_sub(2);
    if node.input.len() < 2 || body.input.len() != carried + 2 || body.output.len() < carried + 1 {
        return Err(what(format!(
            "{} inputs and a body of {} inputs and {} outputs do not make a Loop",
            node.input.len(),
            body.input.len(),
            body.output.len()
        )));
    }
    // Values from outside the body: the carried values it passes on unchanged (weights)
    // and the names it reads from the enclosing graph.
    let mut seeds: HashMap<String, Option<Arr>> = HashMap::new();
    let mut passed = HashSet::new();
    for j in 0..carried {
        let (inside, out) = (&body.input[2 + j].name, &body.output[1 + j].name);
        if inside == out && !node.input[2 + j].is_empty() {
            seeds.insert(inside.clone(), outer.get(&node.input[2 + j])?);
            passed.insert(inside.clone());
        }
    }
    let defined: HashSet<&str> = body
        .input
        .iter()
        .map(|i| i.name.as_str())
        .chain(body.initializer.iter().map(|t| t.name.as_str()))
        .chain(
            body.node
                .iter()
                .flat_map(|n| n.output.iter().map(String::as_str)),
        )
        .collect();
    let mut outside = HashSet::new();
    for n in body.node.iter().flat_map(|n| &n.input) {
        if !n.is_empty() && !defined.contains(n.as_str()) && outside.insert(n.clone()) {
            seeds.insert(n.clone(), outer.get(n)?);
        }
    }
    // The step index: the iteration number, or a carried value from 0 adding 1.
    let mut counters = vec![body.input[0].name.clone()];
    let mut states = Vec::new();
    for j in 0..carried {
        let inside = &body.input[2 + j].name;
        if passed.contains(inside) {
            continue;
        }
        let starts_at_zero = outer
            .get(&node.input[2 + j])?
            .is_some_and(|a| a.data == [0.0]);
        let out = &body.output[1 + j].name;
        if starts_at_zero && counts_up(body, inside, out, &seeds, path)? {
            counters.push(inside.clone());
        } else {
            states.push((j, inside.clone(), body.output[1 + j].name.clone()));
        }
    }
    let mut last = None;
    for (j, state, out) in states {
        let mut reader = Body {
            consts: Consts::seeded(body, path, seeds.clone()),
            outside: &outside,
            counters: &counters,
            state,
            seq: None,
            memo: HashMap::new(),
            busy: HashSet::new(),
            made: 0,
        };
        let step = match reader.sym(&out) {
            Ok(s) => s,
            Err(msg) => {
                last = Some(msg);
                continue;
            }
        };
        // A masked layer (Keras' Masking, Embedding(mask_zero=True)) keeps h where the
        // mask row is false: m ⊙ step + (1 − m) ⊙ h. The step is the GRU's either way.
        let step = match unmask(&step) {
            Some((mask, _)) if Some(mask) == reader.seq.as_deref() => {
                last = Some("it masks with its own input".into());
                continue;
            }
            Some((_, inner)) => inner.clone(),
            None => (*step).clone(),
        };
        match gru_step(&step) {
            Some(mut layer) => {
                layer.seq = reader.seq.unwrap_or_default();
                layer.state_out = node.output.get(j).cloned().unwrap_or_default();
                layer.scan_outs = node.output.iter().skip(carried).cloned().collect();
                return Ok(layer);
            }
            None => last = Some("the new state is not z ⊙ h + (1 − z) ⊙ tanh(n) of a GRU".into()),
        }
    }
    Err(what(format!(
        "its body is not a GRU step: {}",
        last.unwrap_or_else(|| "it carries no state".into())
    )))
}

/// Whether the body output `out` is `inside` + 1.
fn counts_up(
    body: &GraphProto,
    inside: &str,
    out: &str,
    seeds: &HashMap<String, Option<Arr>>,
    path: &Path,
) -> Result<bool> {
    let mut consts = Consts::seeded(body, path, seeds.clone());
    let mut name = out.to_string();
    // Bounded: an Identity cycle ends here too.
    for _ in 0..=body.node.len() {
        let Some((node, 0)) = consts.producer(&name) else {
            return Ok(false);
        };
        match node.op_type.as_str() {
            "Identity" | "Cast" => name = node.input.first().cloned().unwrap_or_default(),
            "Add" if node.input.len() == 2 => {
                for (a, b) in [(0, 1), (1, 0)] {
                    if node.input[a] == inside
                        && consts.get(&node.input[b])?.is_some_and(|c| c.data == [1.0])
                    {
                        return Ok(true);
                    }
                }
                return Ok(false);
            }
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// The body read symbolically for one choice of the carried state.
struct Body<'a> {
    consts: Consts<'a>,
    outside: &'a HashSet<String>,
    counters: &'a [String],
    state: String,
    /// The enclosing graph's sequence the step input is gathered from.
    seq: Option<String>,
    memo: HashMap<String, Rc<Sym>>,
    busy: HashSet<String>,
    /// Values the reading has computed (matrices cut, added, copied): bounded by what
    /// the file holds, so a small body cannot grow without end.
    made: usize,
}

/// The deepest expression read in a Loop body (a GRU step is about 15 levels).
const MAX_DEPTH: usize = 200;
/// The most forms one affine form adds up (a GRU's gate has 2: x·W and h·U).
const MAX_TERMS: usize = 4;
/// How many values reading a body may compute per value the file holds (a GRU step
/// cuts and adds each weight about twice), plus a small allowance.
const MADE_PER_READ: usize = 8;
const MADE_FREE: usize = 1 << 20;

impl Body<'_> {
    /// Counts `n` values computed, or an error when the body computes more than the
    /// file could need.
    fn charge(&mut self, n: usize) -> std::result::Result<(), String> {
        self.made = self.made.saturating_add(n);
        let limit = self
            .consts
            .values_read()
            .saturating_mul(MADE_PER_READ)
            .saturating_add(MADE_FREE);
        if self.made > limit {
            return Err(format!(
                "reading it computes more than {limit} values, more than a GRU step of this file's weights needs"
            ));
        }
        Ok(())
    }

    /// A copy of the form `l` to change, counted.
    fn own(&mut self, l: &Lin) -> std::result::Result<Lin, String> {
        self.charge(l.terms.len() + 1)?;
        Ok(l.clone())
    }

    fn sym(&mut self, name: &str) -> std::result::Result<Rc<Sym>, String> {
        if let Some(s) = self.memo.get(name) {
            return Ok(s.clone());
        }
        let value = if name == self.state {
            Rc::new(Sym::H)
        } else if self.counters.iter().any(|c| c == name) {
            Rc::new(Sym::Step)
        } else if let Some(c) = self.consts.get(name).map_err(|e| err_text(&e))? {
            self.charge(c.data.len())?;
            Rc::new(Sym::Const(c))
        } else {
            let (node, k) = self
                .consts
                .producer(name)
                .ok_or_else(|| format!("`{name}` is read before it is computed"))?;
            if self.busy.len() >= MAX_DEPTH {
                return Err(format!("`{name}` is deeper than {MAX_DEPTH} ops"));
            }
            if !self.busy.insert(name.to_string()) {
                return Err(format!("`{name}` depends on itself"));
            }
            let v = self.node(node, k)?;
            self.busy.remove(name);
            Rc::new(v)
        };
        self.memo.insert(name.to_string(), value.clone());
        Ok(value)
    }

    fn node(&mut self, node: &NodeProto, k: usize) -> std::result::Result<Sym, String> {
        let op = node.op_type.as_str();
        let label = format!("{op} `{}`", node.name);
        let arg = |i: usize| node.input.get(i).filter(|s| !s.is_empty()).cloned();
        let input = |this: &mut Self, i: usize| -> std::result::Result<Rc<Sym>, String> {
            let n = arg(i).ok_or_else(|| format!("{label} lacks input {i}"))?;
            this.sym(&n)
        };
        let unsupported = |what: &str| format!("{label} {what}");
        Ok(match op {
            "Identity" => Rc::unwrap_or_clone(input(self, 0)?),
            "Cast" => {
                let s = input(self, 0)?;
                match &*s {
                    Sym::Step => Sym::Step,
                    // A boolean mask row as 0/1.
                    Sym::Row(_) | Sym::NotRow(_) => Rc::unwrap_or_clone(s),
                    _ if attr(node, "to").is_some_and(|a| a.i == data_type::FLOAT as i64) => {
                        Rc::unwrap_or_clone(s)
                    }
                    _ => return Err(unsupported("casts to a type other than float")),
                }
            }
            "Gather" => {
                let data = arg(0).ok_or_else(|| unsupported("has no data"))?;
                if *input(self, 1)? != Sym::Step || attr(node, "axis").is_some_and(|a| a.i != 0) {
                    return Err(unsupported("reads something other than the step's row"));
                }
                if !self.outside.contains(&data) || self.consts.get(&data).ok().flatten().is_some()
                {
                    return Err(unsupported("reads something other than a sequence"));
                }
                Sym::Row(data)
            }
            "Not" => match &*input(self, 0)? {
                Sym::Row(m) => Sym::NotRow(m.clone()),
                _ => return Err(unsupported("negates something other than a mask row")),
            },
            "MatMul" => {
                let (a, b) = (input(self, 0)?, input(self, 1)?);
                let Sym::Const(m) = &*b else {
                    return Err(unsupported("multiplies by something other than a weight"));
                };
                let [rows, n] = m.dims[..] else {
                    return Err(unsupported("multiplies by a weight that is not a matrix"));
                };
                let src = match &*a {
                    Sym::Row(seq) => {
                        // The row multiplied by the input weights is x_t: one sequence.
                        if self.seq.get_or_insert_with(|| seq.clone()) != seq {
                            return Err(unsupported("multiplies a second sequence"));
                        }
                        Src::X
                    }
                    Sym::H => Src::H,
                    Sym::Mul(p, q) => match (&**p, &**q) {
                        (Sym::Sigmoid(r), Sym::H) | (Sym::H, Sym::Sigmoid(r))
                            if r.terms.iter().all(|(s, _, _)| !matches!(s, Src::GatedH(_))) =>
                        {
                            Src::GatedH(r.clone())
                        }
                        _ => return Err(unsupported("multiplies a product other than r ⊙ h")),
                    },
                    _ => return Err(unsupported("multiplies something other than x, h or r ⊙ h")),
                };
                self.charge(m.data.len() + n)?;
                Sym::Lin(Lin {
                    n,
                    terms: vec![(src, rows, m.data.as_slice().into())],
                    bias: vec![0.0; n].into(),
                    biased: false,
                })
            }
            "Add" => {
                let (a, b) = (input(self, 0)?, input(self, 1)?);
                match (&*a, &*b) {
                    (Sym::Lin(x), Sym::Lin(y)) => {
                        // Adding copies the matrices of both.
                        self.charge(x.size() + y.size())?;
                        let sum = self
                            .own(x)?
                            .plus(y.clone())
                            .ok_or_else(|| unsupported("adds forms of different widths"))?;
                        if sum.terms.len() > MAX_TERMS {
                            return Err(unsupported("adds more forms than a GRU's gate"));
                        }
                        Sym::Lin(sum)
                    }
                    (Sym::Lin(x), Sym::Const(c)) | (Sym::Const(c), Sym::Lin(x)) => {
                        self.charge(x.n)?;
                        Sym::Lin(
                            self.own(x)?.plus_bias(c).ok_or_else(|| {
                                unsupported("adds a constant that is not a bias row")
                            })?,
                        )
                    }
                    (Sym::Const(_), _) | (_, Sym::Const(_)) => {
                        return Err(unsupported(
                            "adds a constant to something other than a form",
                        ))
                    }
                    _ => Sym::Add(a, b),
                }
            }
            "Sub" => match (&*input(self, 0)?, &*input(self, 1)?) {
                (Sym::Const(one), Sym::Sigmoid(z)) if one.data.iter().all(|&v| v == 1.0) => {
                    Sym::OneMinus(z.clone())
                }
                _ => return Err(unsupported("is not 1 − sigmoid")),
            },
            "Mul" => {
                let (a, b) = (input(self, 0)?, input(self, 1)?);
                if matches!(&*a, Sym::Const(_)) || matches!(&*b, Sym::Const(_)) {
                    return Err(unsupported("scales by a constant"));
                }
                Sym::Mul(a, b)
            }
            "Sigmoid" => match &*input(self, 0)? {
                Sym::Lin(l) => Sym::Sigmoid(Rc::new(self.own(l)?)),
                _ => return Err(unsupported("is not of an affine form")),
            },
            "Tanh" => {
                let s = input(self, 0)?;
                match &*s {
                    Sym::Lin(_) | Sym::Add(..) => Sym::Tanh(s),
                    _ => return Err(unsupported("is not of a candidate")),
                }
            }
            "Split" | "Slice" => {
                let Sym::Lin(l) = &*input(self, 0)? else {
                    return Err(unsupported("cuts something other than an affine form"));
                };
                let l = self.own(l)?;
                let ints = |this: &mut Self, i: usize, name: &str| -> Option<Vec<i64>> {
                    match arg(i) {
                        Some(n) => match this.consts.get(&n) {
                            Ok(Some(a)) => Some(a.data.iter().map(|&v| v as i64).collect()),
                            _ => None,
                        },
                        None => attr(node, name).map(|a| a.ints.clone()),
                    }
                };
                let last = |a: i64| a == 1 || a == -1;
                let n = l.n as i64;
                let (from, to) = if op == "Split" {
                    if !last(attr(node, "axis").map_or(0, |a| a.i)) {
                        return Err(unsupported("splits the batch"));
                    }
                    let parts = node.output.len().max(1);
                    let sizes = match ints(self, 1, "split") {
                        Some(s) => s,
                        None if l.n % parts == 0 => vec![n / parts as i64; parts],
                        None => return Err(unsupported("does not split evenly")),
                    };
                    if sizes.len() != parts
                        || sizes.iter().any(|&v| v < 0)
                        || sizes.iter().sum::<i64>() != n
                    {
                        return Err(unsupported("has sizes that do not add up"));
                    }
                    let from: i64 = sizes[..k].iter().sum();
                    (from, from + sizes[k])
                } else {
                    let starts = ints(self, 1, "starts");
                    let ends = ints(self, 2, "ends");
                    let (Some(starts), Some(ends)) = (starts, ends) else {
                        return Err(unsupported("has no constant starts and ends"));
                    };
                    let axes =
                        ints(self, 3, "axes").unwrap_or_else(|| (0..starts.len() as i64).collect());
                    let steps_one = arg(4).is_none_or(|_| {
                        ints(self, 4, "").is_some_and(|s| s.iter().all(|&v| v == 1))
                    });
                    if !steps_one || starts.len() != ends.len() || axes.len() != starts.len() {
                        return Err(unsupported("cuts with steps"));
                    }
                    let clamp = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
                    let mut cols = (0, n);
                    for ((&s, &e), &a) in starts.iter().zip(&ends).zip(&axes) {
                        if last(a) {
                            cols = (clamp(s), clamp(e).max(clamp(s)));
                        } else if !(a == 0 && s == 0 && e >= i32::MAX as i64) {
                            // Rows are the batch: only "all of them" keeps the step a GRU's.
                            return Err(unsupported("cuts other than columns"));
                        }
                    }
                    cols
                };
                self.charge(l.size())?;
                Sym::Lin(l.cols(from as usize, to as usize))
            }
            _ => return Err(format!("op {label} is not part of a GRU step")),
        })
    }
}

/// An error's reason without the file it names (the Loop's own error names it).
fn err_text(e: &GruError) -> String {
    match e {
        GruError::Checkpoint { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// The mask and the step of m ⊙ step + (¬m) ⊙ h, in any order of terms and factors.
fn unmask(e: &Sym) -> Option<(&str, &Sym)> {
    let Sym::Add(a, b) = e else { return None };
    for (kept, held) in [(&**a, &**b), (&**b, &**a)] {
        let (Sym::Mul(p, q), Sym::Mul(r, s)) = (kept, held) else {
            continue;
        };
        let held_mask = match (&**r, &**s) {
            (Sym::NotRow(m), Sym::H) | (Sym::H, Sym::NotRow(m)) => m,
            _ => continue,
        };
        for (m, step) in [(&**p, &**q), (&**q, &**p)] {
            if let Sym::Row(r) = m {
                if r == held_mask {
                    return Some((r.as_str(), step));
                }
            }
        }
    }
    None
}

/// A gate's form x·W + h·U + b: W [I, n], U [n, n].
struct Gate<'a> {
    i: usize,
    w: &'a [f64],
    u: &'a [f64],
    b: &'a [f64],
}

fn gate(l: &Lin) -> Option<Gate<'_>> {
    if l.terms.len() != 2 {
        return None;
    }
    let (i, w) = l.only(|s| *s == Src::X)?;
    let (k, u) = l.only(|s| *s == Src::H)?;
    (k == l.n).then_some(Gate {
        i,
        w,
        u,
        b: &l.bias,
    })
}

/// The layer whose new state is `e`, if `e` is a GRU step.
fn gru_step(e: &Sym) -> Option<LoopLayer> {
    let Sym::Add(a, b) = e else { return None };
    let keep = |s: &Sym| -> Option<Rc<Lin>> {
        match s {
            Sym::Mul(p, q) => match (&**p, &**q) {
                (Sym::Sigmoid(z), Sym::H) | (Sym::H, Sym::Sigmoid(z)) => Some(z.clone()),
                _ => None,
            },
            _ => None,
        }
    };
    let update = |s: &Sym| -> Option<(Rc<Lin>, Sym)> {
        match s {
            Sym::Mul(p, q) => match (&**p, &**q) {
                (Sym::OneMinus(z), Sym::Tanh(c)) | (Sym::Tanh(c), Sym::OneMinus(z)) => {
                    Some((z.clone(), (**c).clone()))
                }
                _ => None,
            },
            _ => None,
        }
    };
    let (z, (z2, c)) = match (keep(a), update(b)) {
        (Some(z), Some(u)) => (z, u),
        _ => (keep(b)?, update(a)?),
    };
    if !same(&z, &z2) {
        return None;
    }
    // The candidate: x·Wn + bn + r ⊙ (h·Un + bhn) (reset-after) or x·Wn + (r ⊙ h)·Un + bn.
    let (variant, r, wn, un, bn, bhn, biased) = match &c {
        Sym::Lin(l) if l.terms.len() == 2 => {
            let (_, wn) = l.only(|s| *s == Src::X)?;
            let (k, un) = l.only(|s| matches!(s, Src::GatedH(_)))?;
            let r = l.terms.iter().find_map(|(s, _, _)| match s {
                Src::GatedH(r) => Some(r.clone()),
                _ => None,
            })?;
            (k == l.n).then_some(())?;
            let zeros = vec![0.0; l.n];
            (
                GruVariant::ResetBefore,
                r,
                wn.to_vec(),
                un.to_vec(),
                l.bias.to_vec(),
                zeros,
                l.biased,
            )
        }
        Sym::Add(p, q) => {
            let split = |p: &Sym, q: &Sym| -> Option<(Lin, Rc<Lin>, Lin)> {
                let Sym::Lin(xl) = p else { return None };
                let Sym::Mul(g, hl) = q else { return None };
                match (&**g, &**hl) {
                    (Sym::Sigmoid(r), Sym::Lin(hl)) | (Sym::Lin(hl), Sym::Sigmoid(r)) => {
                        Some((xl.clone(), r.clone(), hl.clone()))
                    }
                    _ => None,
                }
            };
            let (xl, r, hl) = split(p, q).or_else(|| split(q, p))?;
            if xl.terms.len() != 1 || hl.terms.len() != 1 || xl.n != hl.n {
                return None;
            }
            let (_, wn) = xl.only(|s| *s == Src::X)?;
            let (k, un) = hl.only(|s| *s == Src::H)?;
            (k == hl.n).then_some(())?;
            (
                GruVariant::ResetAfter,
                r,
                wn.to_vec(),
                un.to_vec(),
                xl.bias.to_vec(),
                hl.bias.to_vec(),
                xl.biased || hl.biased,
            )
        }
        _ => return None,
    };
    let Gate {
        i,
        w: wz,
        u: uz,
        b: bz,
    } = gate(&z)?;
    let Gate {
        i: ir,
        w: wr,
        u: ur,
        b: br,
    } = gate(&r)?;
    let h = z.n;
    if r.n != h || ir != i || wn.len() != i * h || un.len() != h * h || bn.len() != h {
        return None;
    }
    // [I, H] (x·W) as gru-engine's [H, I] rows, gate blocks r, z, n.
    let rows = |ms: [&[f64]; 3], k: usize| -> Vec<f32> {
        ms.iter()
            .flat_map(|m| (0..h).flat_map(move |o| (0..k).map(move |j| m[j * h + o] as f32)))
            .collect()
    };
    let f32s = |v: [&[f64]; 3]| -> Vec<f32> {
        v.iter().flat_map(|b| b.iter().map(|&x| x as f32)).collect()
    };
    let zeros = vec![0.0; h];
    Some(LoopLayer {
        seq: String::new(),
        state_out: String::new(),
        scan_outs: Vec::new(),
        input: i,
        hidden: h,
        variant,
        bias: biased || z.biased || r.biased,
        dir: DirWeights {
            w_ih: rows([wr, wz, &wn], i),
            w_hh: rows([ur, uz, &un], h),
            b_ih: f32s([br, bz, &bn]),
            b_hh: f32s([&zeros, &zeros, &bhn]),
        },
    })
}
