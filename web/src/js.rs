//! Between JavaScript values and the library's: errors, option objects, results.

use std::cell::{RefCell, RefMut};

use gru_engine::GruError;
use js_sys::{Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

/// A library error as a JavaScript `Error` with the CLI's message.
pub fn error(e: GruError) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

/// A JavaScript `Error` for a bad argument.
pub fn bad(message: String) -> JsValue {
    error(GruError::Config(message))
}

/// Reads the fields of an options object (`undefined` and `null` mean none given).
pub struct Options(Option<Object>);

impl Options {
    /// `value` as an options object; anything else but `undefined`/`null` is refused.
    pub fn new(value: &JsValue, what: &str) -> Result<Self, JsValue> {
        if value.is_undefined() || value.is_null() {
            return Ok(Options(None));
        }
        match value.dyn_ref::<Object>() {
            Some(o) if !value.is_function() && !js_sys::Array::is_array(value) => {
                Ok(Options(Some(o.clone())))
            }
            _ => Err(bad(format!(
                "{what} must be an object of options, found {}",
                describe(value)
            ))),
        }
    }

    fn get(&self, key: &str) -> Result<Option<JsValue>, JsValue> {
        let Some(o) = &self.0 else { return Ok(None) };
        let v = Reflect::get(o, &key.into())?;
        Ok((!v.is_undefined() && !v.is_null()).then_some(v))
    }

    /// A number field, or `default`.
    pub fn f64(&self, key: &str, default: f64) -> Result<f64, JsValue> {
        match self.get(key)? {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| bad(format!("{key} must be a number, found {}", describe(&v)))),
        }
    }

    /// A whole-number field at least `min`, or `default`.
    pub fn count(&self, key: &str, default: u64, min: u64) -> Result<u64, JsValue> {
        let v = self.f64(key, default as f64)?;
        if v.fract() != 0.0 || v < min as f64 || v > 2f64.powi(53) {
            return Err(bad(format!(
                "{key} must be a whole number of at least {min}, found {v}"
            )));
        }
        Ok(v as u64)
    }

    /// A string field, or `default`.
    pub fn string(&self, key: &str, default: &str) -> Result<String, JsValue> {
        match self.get(key)? {
            None => Ok(default.to_string()),
            Some(v) => v
                .as_string()
                .ok_or_else(|| bad(format!("{key} must be a string, found {}", describe(&v)))),
        }
    }

    /// A function field, if given.
    pub fn function(&self, key: &str) -> Result<Option<js_sys::Function>, JsValue> {
        match self.get(key)? {
            None => Ok(None),
            Some(v) => v
                .dyn_into::<js_sys::Function>()
                .map(Some)
                .map_err(|v| bad(format!("{key} must be a function, found {}", describe(&v)))),
        }
    }
}

/// A value in words for an error message.
pub fn describe(v: &JsValue) -> String {
    if let Some(s) = v.as_string() {
        format!("the string {s:?}")
    } else if let Some(n) = v.as_f64() {
        format!("the number {n}")
    } else if v.is_function() {
        "a function".into()
    } else if js_sys::Array::is_array(v) {
        "an array".into()
    } else {
        v.js_typeof()
            .as_string()
            .unwrap_or_else(|| "a value".into())
    }
}

/// A plain object of these fields.
pub fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o.into()
}

/// An `f64` that may be missing, as a number or `null`.
pub fn maybe(v: Option<f64>) -> JsValue {
    v.map_or(JsValue::NULL, JsValue::from_f64)
}

/// Milliseconds from the page's clock (`performance.now()`, else `Date.now()`).
pub fn now_ms() -> f64 {
    let perf = Reflect::get(&js_sys::global(), &"performance".into()).ok();
    let now = perf.filter(|p| !p.is_undefined()).and_then(|p| {
        let f = Reflect::get(&p, &"now".into()).ok()?;
        let f: js_sys::Function = f.dyn_into().ok()?;
        f.call0(&p).ok()?.as_f64()
    });
    now.unwrap_or_else(js_sys::Date::now)
}

/// `cell` for one call at a time. The borrow is held across the call's awaits on
/// purpose: a second call before the first settles is refused with an `Error` rather
/// than interleaved (getters read copies outside the cell, so they never collide).
pub fn exclusive<'a, T>(cell: &'a RefCell<T>, what: &str) -> Result<RefMut<'a, T>, JsValue> {
    cell.try_borrow_mut()
        .map_err(|_| bad(format!("the {what} is busy: await its previous call first")))
}
