//! The thin `#[wasm_bindgen]` facade the page's worker calls: one lab, one request at a time, a cancel.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::lab::{self, Progress, Request};

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs a panic hook that keeps the message, so the worker can report it after the trap.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let message = info.to_string();
        web_sys::console::error_1(&JsValue::from_str(&message));
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(message));
    }));
}

/// The message of the last panic, if the module trapped on one.
#[wasm_bindgen(js_name = lastPanic)]
pub fn last_panic() -> Option<String> {
    LAST_PANIC.with(|p| p.borrow().clone())
}

/// The roofline's peak kernel (`bench::simd_peak`), timed by the benchmark page itself: returns
/// its checksum.
#[wasm_bindgen(js_name = simdPeak)]
pub fn simd_peak(iterations: u32) -> f32 {
    crate::bench::simd_peak(iterations)
}

/// Floating-point operations in one `simdPeak(iterations)` call.
#[wasm_bindgen(js_name = simdPeakFlops)]
pub fn simd_peak_flops(iterations: u32) -> f64 {
    crate::bench::simd_peak_flops(iterations)
}

/// The worker's lab (see [`crate::lab`]).
#[wasm_bindgen]
pub struct Lab {
    inner: Rc<lab::Lab>,
}

/// The worker's side of a request: `progress(event)` posts to the page; `pause()` returns a
/// Promise that resolves once the worker's pending messages (a cancel) have been handled.
struct Worker {
    progress: js_sys::Function,
    pause: js_sys::Function,
}

/// Plain objects for the page; bytes (a trained model's file) as a Uint8Array, not an array of
/// numbers.
fn serializer() -> serde_wasm_bindgen::Serializer {
    serde_wasm_bindgen::Serializer::json_compatible().serialize_bytes_as_arrays(false)
}

impl lab::Host for Worker {
    fn progress(&self, event: Progress) {
        if let Ok(value) = event.serialize(&serializer()) {
            let _ = self.progress.call1(&JsValue::NULL, &value);
        }
    }

    fn pause(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        let promise = self.pause.call0(&JsValue::NULL).ok().and_then(|p| p.dyn_into::<js_sys::Promise>().ok());
        Box::pin(async move {
            if let Some(p) = promise {
                let _ = wasm_bindgen_futures::JsFuture::from(p).await;
            }
        })
    }
}

#[wasm_bindgen]
impl Lab {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Lab {
        Lab { inner: Rc::new(lab::Lab::new()) }
    }

    /// Answers request `id`: `request` is `{ op: payload }` (see `lab::protocol::Request`).
    /// Resolves to the answer as a plain object; rejects with the core's message.
    pub fn request(&self, id: u32, request: JsValue, progress: js_sys::Function, pause: js_sys::Function) -> js_sys::Promise {
        let lab = Rc::clone(&self.inner);
        wasm_bindgen_futures::future_to_promise(async move {
            let request: Request = serde_wasm_bindgen::from_value(request)
                .map_err(|e| {
                    JsError::new(&format!(
                        "the page sent a request this version of blindspot does not read ({e}): reload the page \
                         (an offline copy may be out of date)"
                    ))
                })?;
            let host = Worker { progress, pause };
            let response = lab.answer(id as u64, request, &host).await.map_err(|e| JsError::new(&e.to_string()))?;
            response
                .serialize(&serializer())
                .map_err(|e| JsError::new(&e.to_string()).into())
        })
    }

    /// Asks request `id` to stop at its next iteration; everything loaded stays.
    pub fn cancel(&self, id: u32) {
        self.inner.cancel(id as u64);
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}
