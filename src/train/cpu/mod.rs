//! The CPU reference trainer: the whole model in plain loops, generic over the float
//! type so gradient checks run it in f64 (`pass`), and an optimiser that mirrors the
//! kernels (`update`).

mod pass;
mod update;

use crate::dist::comm::Communicator;
use crate::dist::shard::Shard;
use crate::error::{GruError, Result};
use crate::generate::{check_lm, Sampling};
use crate::model::batch::Prepared;
use crate::model::{batch_first_logits, check_same_config, Batch, Loss, ModelConfig, ModelParams};
use crate::train::options::{OptimizerState, TrainOptions};
use crate::train::trainer::{Metrics, Split, Totals, Trainer};

pub use pass::{model_pass, ModelPass};
pub(crate) use pass::{pass, shared_batch};
use update::update;

/// The CPU reference trainer ([`Trainer`] in plain loops, f32).
#[derive(Debug, Clone)]
pub struct CpuTrainer {
    params: ModelParams,
    options: TrainOptions,
    state: OptimizerState,
    /// Stateful carry: ([layers·dirs, B, H], B).
    carry: Option<(Vec<f32>, usize)>,
    totals: [Totals; 2],
}

impl CpuTrainer {
    /// A trainer starting from `params` with a fresh optimiser.
    pub fn new(params: ModelParams, options: TrainOptions) -> Result<Self> {
        params.config.validate()?;
        options.validate()?;
        if options.stateful && params.config.bidirectional {
            return Err(GruError::Config(
                "a stateful model must be unidirectional (the reverse direction has no next batch to carry into)".into(),
            ));
        }
        let lens: Vec<usize> = params.infos().iter().map(|i| i.len()).collect();
        Ok(CpuTrainer {
            params,
            options,
            state: OptimizerState::zeros(&lens),
            carry: None,
            totals: [[0.0; 4]; 2],
        })
    }

    fn add(&mut self, split: Split, t: Totals) {
        let acc = &mut self.totals[split as usize];
        for (a, v) in acc.iter_mut().zip(t) {
            *a += v;
        }
    }
}

impl Trainer for CpuTrainer {
    fn config(&self) -> &ModelConfig {
        &self.params.config
    }
    fn options(&self) -> &TrainOptions {
        &self.options
    }
    fn device_name(&self) -> String {
        "CPU reference".into()
    }
    fn train_step(&mut self, batch: &Batch) -> Result<()> {
        let (grads, h_n, b) = self.backward(batch)?;
        update(&mut self.params, &grads, &mut self.state, &self.options);
        if self.options.stateful {
            self.carry = Some((h_n, b));
        }
        Ok(())
    }
    fn train_step_shared(
        &mut self,
        batch: &Batch,
        shard: Shard,
        comm: &dyn Communicator,
    ) -> Result<()> {
        let prep = shared_batch(&self.params.config, batch, shard, comm)?;
        let (mut grads, h_n, b) = self.backward_prepared(&prep)?;
        let mut flat: Vec<f32> = grads.tensors().concat();
        comm.sum_f32(&mut flat)?;
        let mut at = 0;
        for t in grads.tensors_mut() {
            let n = t.len();
            t.copy_from_slice(&flat[at..at + n]);
            at += n;
        }
        update(&mut self.params, &grads, &mut self.state, &self.options);
        if self.options.stateful {
            self.carry = Some((h_n, b));
        }
        Ok(())
    }
    fn gradients(&mut self, batch: &Batch) -> Result<ModelParams> {
        Ok(self.backward(batch)?.0)
    }
    fn evaluate(&mut self, batch: &Batch) -> Result<()> {
        // Targets are required, as on the GPU: a loss needs them.
        let prep = batch.prepare(&self.params.config, true)?;
        let out = pass(&self.params, &prep, None, None, false)?;
        self.add(Split::Eval, out.totals);
        Ok(())
    }
    fn take_metrics(&mut self, split: Split) -> Result<Metrics> {
        let t = std::mem::take(&mut self.totals[split as usize]);
        Ok(Metrics::from_totals(
            t,
            self.params.config.loss != Loss::MeanSquaredError,
        ))
    }
    fn predict(&mut self, batch: &Batch) -> Result<Vec<f32>> {
        let out = model_pass(&self.params, batch, None, None, false)?;
        Ok(batch_first_logits(
            &self.params.config,
            out.logits,
            batch.batch,
            batch.seq_len,
        ))
    }
    fn params(&mut self) -> Result<ModelParams> {
        Ok(self.params.clone())
    }
    fn set_params(&mut self, params: &ModelParams) -> Result<()> {
        check_same_config(&self.params.config, &params.config)?;
        for (info, t) in params.infos().iter().zip(params.tensors()) {
            crate::error::check_len(
                &info.name,
                t.len(),
                &info.shape,
                &format!("{:?}", info.shape),
            )?;
        }
        self.params = params.clone();
        Ok(())
    }
    fn optimizer_state(&mut self) -> Result<OptimizerState> {
        Ok(self.state.clone())
    }
    fn set_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        let lens: Vec<usize> = self.params.infos().iter().map(|i| i.len()).collect();
        state.check(&lens)?;
        self.state = state.clone();
        Ok(())
    }
    fn carried_state(&mut self) -> Result<Option<Vec<f32>>> {
        Ok(self.carry.as_ref().map(|c| c.0.clone()))
    }
    fn generate_stream(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<usize> {
        check_lm(&self.params.config, prompt)?;
        sampling.validate()?;
        let (mut logits, mut h) = self.lm_step(prompt, None)?;
        for i in 0..n {
            let tok = sampling.pick(&logits, i as u32);
            if !on_token(tok) {
                return Ok(i + 1);
            }
            if i + 1 < n {
                (logits, h) = self.lm_step(&[tok], Some(&h))?;
            }
        }
        Ok(n)
    }
    fn set_carried_state(&mut self, state: Option<(&[f32], usize)>) -> Result<()> {
        self.carry = match state {
            Some((h, b)) => {
                let cfg = self.params.config.gru_config();
                let dims = [cfg.num_layers * cfg.num_directions(), b, cfg.hidden_size];
                crate::error::check_len("carried state", h.len(), &dims, "[layers*dirs, B, H]")?;
                Some((h.to_vec(), b))
            }
            None => None,
        };
        Ok(())
    }
}

impl CpuTrainer {
    /// The training-mode pass of the next step: (gradients, final state, batch size);
    /// the loss is counted under [`Split::Train`].
    fn backward(&mut self, batch: &Batch) -> Result<(ModelParams, Vec<f32>, usize)> {
        let prep = batch.prepare(&self.params.config, true)?;
        self.backward_prepared(&prep)
    }

    fn backward_prepared(&mut self, prep: &Prepared) -> Result<(ModelParams, Vec<f32>, usize)> {
        let seed = self.options.step_seed(self.state.step + 1);
        let h0 = match &self.carry {
            Some((h, b)) if self.options.stateful && *b == prep.batch => Some(h.as_slice()),
            _ => None,
        };
        let out = pass(&self.params, prep, Some(seed), h0, true)?;
        let grads = out
            .grads
            .ok_or_else(|| GruError::State("no gradients".into()))?;
        self.add(Split::Train, out.totals);
        Ok((grads, out.h_n, prep.batch))
    }

    /// Logits of the last step and the final state after running `tokens` from `h0`.
    fn lm_step(&self, tokens: &[u32], h0: Option<&[f32]>) -> Result<(Vec<f32>, Vec<f32>)> {
        let batch = Batch::tokens(tokens, 1, tokens.len());
        let prep = batch.prepare(&self.params.config, false)?;
        let out = pass(&self.params, &prep, None, h0, false)?;
        let c = self.params.config.outputs;
        Ok((out.logits[out.logits.len() - c..].to_vec(), out.h_n))
    }
}
