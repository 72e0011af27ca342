//! gru-engine in a browser tab: a JavaScript API, built with wasm-bindgen, over the
//! library's awaited calls. Models and trainers run on WebGPU when the page has it and
//! on the CPU reference (compiled into the same wasm) when it does not, and say which.
//!
//! ```js
//! import init, { Engine, Model, Trainer } from "./gru_web.js";
//! await init();
//! console.log(await Engine.adapterInfo()); // {name, backend, fallback, gpu, reason}
//! const model = await Model.load(new Uint8Array(await (await fetch("best.safetensors")).arrayBuffer()));
//! console.log(await model.generate("fn ", 200, { temperature: 0 }));
//! const trainer = await Trainer.create(text, { hidden: 64, steps: 200, seed: 1 });
//! const losses = await trainer.step(10);
//! const bytes = await trainer.save(); // read natively by `gru generate`
//! ```
//!
//! Every failure is a JavaScript `Error` whose message is the one the CLI prints after
//! `error: `; a wasm panic, which should never happen, is reported to the console.

// Each model and trainer serves one call at a time by holding its RefCell across the
// call's awaits (`js::exclusive`); a concurrent call is refused, not interleaved.
#![allow(clippy::await_holding_refcell_ref)]

mod device;
mod js;
mod model;
mod trainer;

pub use device::Engine;
pub use model::Model;
pub use trainer::Trainer;

use wasm_bindgen::prelude::*;

/// Runs when the module is instantiated (`await init()`): panics reach the console
/// with their message.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}
