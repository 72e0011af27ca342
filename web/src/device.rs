//! Which device a page computes on: WebGPU, opened once per page and shared, or the CPU
//! reference where the page has no WebGPU (or is asked for it).

use std::cell::RefCell;
use std::sync::Arc;

use gru_engine::budget::{Footprint, Placement};
use gru_engine::model::ModelParams;
use gru_engine::train::{AwaitableTrainer, CpuTrainer, GpuTrainer, TrainOptions};
use gru_engine::{DeviceRequest, GpuContext, GruError};
use js_sys::Reflect;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::js::{bad, error, object, Options};

/// The page's WebGPU device, or why it has none.
#[derive(Clone)]
enum Gpu {
    Open(Arc<GpuContext>, Label),
    Missing(String),
}

/// What the browser says of its adapter, which wgpu's adapter info on WebGPU leaves
/// empty: a name (description, else vendor and architecture) and whether it is a
/// fallback (software) adapter.
#[derive(Clone)]
struct Label {
    name: String,
    fallback: bool,
}

thread_local! {
    /// Opened by the first call that needs it; every model and trainer shares it.
    static GPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
}

/// `navigator.gpu`, if the page has it.
fn navigator_gpu() -> Option<JsValue> {
    let nav = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let gpu = Reflect::get(&nav, &"gpu".into()).ok()?;
    (!gpu.is_undefined() && !gpu.is_null()).then_some(gpu)
}

async fn gpu() -> Gpu {
    if let Some(g) = GPU.with(|g| g.borrow().clone()) {
        return g;
    }
    let g = if navigator_gpu().is_none() {
        Gpu::Missing("this page has no WebGPU (navigator.gpu is missing)".into())
    } else {
        match GpuContext::new_async(&DeviceRequest::default()).await {
            Ok(ctx) => {
                let label = browser_label().await.unwrap_or_else(|| Label {
                    name: ctx.adapter_info().name.clone(),
                    fallback: ctx.is_software(),
                });
                Gpu::Open(ctx, label)
            }
            Err(e) => Gpu::Missing(e.to_string()),
        }
    };
    GPU.with(|slot| slot.borrow_mut().get_or_insert(g).clone())
}

/// Where a model or trainer runs: `"auto"` (WebGPU if the page has it, else the CPU
/// reference), `"gpu"` (WebGPU or an error) or `"cpu"`.
/// The second value names the device in words.
pub async fn choose(options: &Options) -> Result<(Option<Arc<GpuContext>>, String), JsValue> {
    let device = options.string("device", "auto")?;
    let cpu = || (None, "CPU reference".to_string());
    match device.as_str() {
        "cpu" => Ok(cpu()),
        "auto" => Ok(match gpu().await {
            Gpu::Open(ctx, label) => (Some(ctx), label.name),
            Gpu::Missing(reason) => {
                web_log(&format!(
                    "gru-engine: no WebGPU device ({reason}); using the CPU reference"
                ));
                cpu()
            }
        }),
        "gpu" => match gpu().await {
            Gpu::Open(ctx, label) => Ok((Some(ctx), label.name)),
            Gpu::Missing(reason) => Err(error(GruError::NoAdapter(reason))),
        },
        other => Err(bad(format!(
            "device must be \"auto\", \"gpu\" or \"cpu\", found {other:?}"
        ))),
    }
}

/// A trainer of `params` on `ctx` (or the CPU reference), checked to fit first.
pub fn trainer(
    ctx: Option<Arc<GpuContext>>,
    params: ModelParams,
    options: TrainOptions,
    (batch, seq_len): (usize, usize),
) -> Result<AwaitableTrainer, JsValue> {
    let cfg = params.config;
    let at = match &ctx {
        None => Placement::Cpu,
        Some(c) => Placement::Gpu {
            shares_host: c.is_software(),
        },
    };
    Footprint::check_training(
        &cfg,
        batch,
        seq_len,
        at,
        "use a smaller hidden, embed, layers, batch or sequence length",
    )
    .map_err(error)?;
    let mut t = match ctx {
        Some(ctx) => AwaitableTrainer::Gpu(Box::new(
            GpuTrainer::new(ctx, &params, options).map_err(error)?,
        )),
        None => AwaitableTrainer::Cpu(Box::new(CpuTrainer::new(params, options).map_err(error)?)),
    };
    t.trainer().prepare(seq_len, batch).map_err(error)?;
    Ok(t)
}

/// A line on the console (where a native run prints its device line to stderr).
pub fn web_log(line: &str) {
    web_sys_log(line);
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = log)]
    fn web_sys_log(s: &str);
}

/// The device behind the JavaScript API.
#[wasm_bindgen]
pub struct Engine;

#[wasm_bindgen]
impl Engine {
    /// The adapter models and trainers use with `device: "auto"`: `{name, backend,
    /// fallback, gpu, reason}`; `gpu` is false (and `reason` says why) when the page
    /// falls back to the CPU reference. Opens the device on the first call.
    #[wasm_bindgen(js_name = adapterInfo)]
    pub async fn adapter_info() -> Result<JsValue, JsValue> {
        Ok(match gpu().await {
            Gpu::Open(ctx, label) => {
                let info = ctx.adapter_info();
                object(&[
                    ("name", label.name.as_str().into()),
                    ("backend", format!("{:?}", info.backend).into()),
                    ("fallback", label.fallback.into()),
                    ("gpu", true.into()),
                    ("reason", JsValue::NULL),
                ])
            }
            Gpu::Missing(reason) => object(&[
                ("name", "CPU reference".into()),
                ("backend", "cpu".into()),
                ("fallback", true.into()),
                ("gpu", false.into()),
                ("reason", reason.into()),
            ]),
        })
    }

    /// The engine's version.
    pub fn version() -> String {
        env!("CARGO_PKG_VERSION").into()
    }
}

/// The browser's own description of the adapter it offers (SwiftShader in headless
/// Chromium).
async fn browser_label() -> Option<Label> {
    let gpu = navigator_gpu()?;
    let request: js_sys::Function = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let promise: js_sys::Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    let info = Reflect::get(&adapter, &"info".into()).ok()?;
    let field = |k: &str| {
        Reflect::get(&info, &k.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let name = match field("description") {
        d if !d.is_empty() => d,
        _ => format!("{} {}", field("vendor"), field("architecture"))
            .trim()
            .to_string(),
    };
    let fallback = Reflect::get(&info, &"isFallbackAdapter".into())
        .ok()?
        .as_bool()
        .unwrap_or(false);
    Some(Label {
        name: if name.is_empty() {
            "WebGPU adapter".into()
        } else {
            name
        },
        fallback,
    })
}
