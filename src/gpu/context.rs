//! Adapter and device selection, limits and features, error capture, readback.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{GruError, Result};
use crate::gpu::kernels::{Elems, Kernel, KernelCache, Pipeline, Slot};

/// What `gru devices` prints about one adapter.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// Position in [`list_adapters`]; pass it as [`DeviceRequest::adapter_index`].
    pub index: usize,
    /// Adapter name, e.g. "NVIDIA H100" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Vulkan, Metal, DX12 or GL.
    pub backend: wgpu::Backend,
    /// Discrete, integrated, virtual, CPU (software) or other.
    pub device_type: wgpu::DeviceType,
    /// Driver name.
    pub driver: String,
    /// Driver version details.
    pub driver_info: String,
    /// Largest storage buffer a kernel can bind, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Shared memory per workgroup, in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Storage buffers one kernel may bind.
    pub max_storage_buffers_per_shader_stage: u32,
    /// Whether f16 arithmetic in shaders is available.
    pub shader_f16: bool,
    /// Whether subgroup operations are available.
    pub subgroup: bool,
    /// Why the kernels the engine would run on this adapter do not fit its limits (the
    /// first kernel and limit that fail), or `None` when all fit. Such an adapter is
    /// refused when opened, and `--device auto` passes it over.
    pub unfit: Option<String>,
}

impl AdapterSummary {
    /// A CPU rasterizer such as llvmpipe or SwiftShader.
    pub fn is_software(&self) -> bool {
        self.device_type == wgpu::DeviceType::Cpu
    }
}

/// Which adapter to open.
#[derive(Debug, Clone, Copy)]
pub struct DeviceRequest {
    /// Backends to consider (Vulkan, Metal, DX12, GL).
    pub backends: wgpu::Backends,
    /// An index from [`list_adapters`]; `None` picks the best (discrete > integrated > software).
    pub adapter_index: Option<usize>,
    /// Let software adapters run the subgroup builds of the GEMM and step kernels
    /// (default); `false` keeps the portable builds every device runs (for tests and
    /// for comparing the two).
    pub subgroup_kernels: bool,
    /// Let software adapters run a chunk of timesteps per dispatch for every hidden
    /// size (default; a dispatch costs them about 100 µs); `false` keeps one dispatch
    /// per step wherever a GPU would (H > 64), for tests and comparisons.
    pub sequence_kernels: bool,
    /// Whether the device gets the GPU builds: the per-step kernels in tiles of 4 units x
    /// 16 rows with each unit lane's k loop over 64 threads (128-thread workgroups,
    /// shaders/parts/step_split_k.wgsl; see `wide_steps`), the GEMMs split K to fill a
    /// large GPU, and column sums run in slices of 256 rows (many short columns) rather
    /// than 4,096. `None` (default): on GPUs, not on software
    /// adapters, whose barrier-free builds and few dispatches suit them; `Some` forces it
    /// either way (tests run the GPU builds on llvmpipe this way).
    pub split_steps: Option<bool>,
    /// Whether the GPU step builds take wide tiles (16 units x 16 rows: a quarter of the
    /// workgroups, half the loads of the state rows), which suit GPUs with few cores.
    /// `None` (default): integrated GPUs do, others take the narrow tiles (4 units x 16
    /// rows) that fill a large discrete GPU; `Some` forces it (tests, `gru bench --plan`).
    pub wide_steps: Option<bool>,
    /// Run both directions of a bidirectional layer in one step dispatch (grid z = 2)
    /// where their tensors can be bound together (default `true`); `false` gives each
    /// direction its own dispatches (tests compare the two).
    pub pair_directions: bool,
    /// The device only records dispatch lists, never runs them (`gru bench --plan`):
    /// sequence entries then take a GPU's chunks of steps even on a software adapter,
    /// whose loop-iteration cap would cut a run of them short.
    #[doc(hidden)]
    pub record_only: bool,
}

impl Default for DeviceRequest {
    fn default() -> Self {
        DeviceRequest {
            backends: wgpu::Backends::all(),
            adapter_index: None,
            subgroup_kernels: true,
            sequence_kernels: true,
            split_steps: None,
            wide_steps: None,
            pair_directions: true,
            record_only: false,
        }
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    // Backend options from the environment (WGPU_DX12_COMPILER and the like). DX12's
    // default already takes DXC where it can: linked in (the `static-dxc` feature), else
    // a dxcompiler.dll on the PATH, and only then FXC, which cannot unroll the loops the
    // kernels' register blocks rely on.
    desc.backend_options = desc.backend_options.with_env();
    wgpu::Instance::new(desc)
}

fn rank(device_type: wgpu::DeviceType, backend: wgpu::Backend) -> (u8, u8) {
    let device = match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = match backend {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal => 0,
        wgpu::Backend::Dx12 => 1,
        _ => 2,
    };
    (device, backend)
}

async fn enumerate(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    instance(backends).enumerate_adapters(backends).await
}

/// Which builds a device runs: (the software adapters' subgroup builds, their
/// uniform-window builds). Subgroup builds need a software adapter (where they pay; GPUs
/// keep the tuned portable builds) with subgroups of 8 to 64 lanes (the kernels shuffle
/// from lanes 0 to 7, and a subgroup must fit the GEMM's 64-lane workgroup); windows need
/// 64 KiB uniform bindings at 256-byte offsets.
fn builds(
    info: &wgpu::AdapterInfo,
    features: wgpu::Features,
    limits: &wgpu::Limits,
    subgroup_kernels: bool,
) -> (bool, bool) {
    let subgroups = subgroup_kernels
        && features.contains(wgpu::Features::SUBGROUP)
        && info.subgroup_min_size >= 8
        && info.subgroup_max_size <= 64;
    let software = info.device_type == wgpu::DeviceType::Cpu && subgroups;
    let windows = software
        && limits.max_uniform_buffer_binding_size >= UNIFORM_WINDOW
        && limits.max_uniform_buffers_per_shader_stage >= UNIFORM_BUFFERS_PER_STAGE
        && limits.min_uniform_buffer_offset_alignment <= 256;
    (software, windows)
}

fn summarize(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    let (software, windows) = builds(&info, features, &limits, true);
    let unfit = crate::gpu::kernels::unfit(&limits, software, windows);
    AdapterSummary {
        index,
        name: info.name,
        backend: info.backend,
        device_type: info.device_type,
        driver: info.driver,
        driver_info: info.driver_info,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        subgroup: features.contains(wgpu::Features::SUBGROUP),
        unfit,
    }
}

/// The adapters of `backends`, GL only when no Vulkan/Metal/DX12 adapter exists (or GL
/// is all that was asked for): probing GL prints windowing-system noise on headless
/// machines ("XDG_RUNTIME_DIR is invalid ...") and it is the slowest path anyway.
async fn enumerate_preferred(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let primary = backends & wgpu::Backends::PRIMARY;
    if !primary.is_empty() {
        let found = enumerate(primary).await;
        if !found.is_empty() {
            return found;
        }
    }
    enumerate(backends).await
}

/// Every adapter wgpu finds on these backends, in a stable order; GL adapters only when
/// there is no Vulkan/Metal/DX12 adapter or only GL is asked for. The indices are the
/// ones [`DeviceRequest::adapter_index`] takes.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters(backends: wgpu::Backends) -> Vec<AdapterSummary> {
    pollster::block_on(list_adapters_async(backends))
}

/// [`list_adapters`], awaited (the form a browser has).
pub async fn list_adapters_async(backends: wgpu::Backends) -> Vec<AdapterSummary> {
    enumerate_preferred(backends)
        .await
        .iter()
        .enumerate()
        .map(|(i, a)| summarize(i, a))
        .collect()
}

/// The index [`GpuContext::new`] picks when no index is given, if any adapter exists:
/// the best by type and backend among those every kernel fits; only when none fits, the
/// best of all (opening it then fails naming the limit).
pub fn best_adapter_index(adapters: &[AdapterSummary]) -> Option<usize> {
    let best = |fit_only: bool| {
        adapters
            .iter()
            .filter(|a| !fit_only || a.unfit.is_none())
            .min_by_key(|a| (rank(a.device_type, a.backend), a.index))
            .map(|a| a.index)
    };
    best(true).or_else(|| best(false))
}

/// One opened device with its queue and the caches that live as long as it does.
///
/// Cheap to share: wrap it in an `Arc` (the constructors do) and hand it to every layer.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    pub(crate) kernels: KernelCache,
    subgroup_kernels: bool,
    sequence_kernels: bool,
    split_steps: Option<bool>,
    wide_steps: Option<bool>,
    pair_directions: bool,
    record_only: bool,
    lost: Arc<AtomicBool>,
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Bytes of every buffer created so far ([`GpuContext::allocated_bytes`]).
    allocated: AtomicU64,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuContext({} on {:?})",
            self.info.name, self.info.backend
        )
    }
}

impl GpuContext {
    /// Opens the best adapter on any backend.
    pub fn new_default() -> Result<Arc<Self>> {
        Self::new(&DeviceRequest::default())
    }

    /// Opens the adapter that `request` names, with every limit the adapter allows
    /// (so large sequences fit in one storage binding where the hardware can). Blocks
    /// until the device is open: [`GpuContext::new_async`] is the same, awaited (in a
    /// browser, this form is an error).
    pub fn new(request: &DeviceRequest) -> Result<Arc<Self>> {
        crate::gpu::wait::blocking(Self::new_async(request))
    }

    /// [`GpuContext::new_default`], awaited.
    pub async fn new_default_async() -> Result<Arc<Self>> {
        Self::new_async(&DeviceRequest::default()).await
    }

    /// [`GpuContext::new`], awaited: the one implementation, and the form a browser has
    /// (where nothing may block).
    // In a browser wgpu's handles are neither Send nor Sync, and there is one thread.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub async fn new_async(request: &DeviceRequest) -> Result<Arc<Self>> {
        // The same list as `list_adapters`, so an index from `gru devices` means the same.
        let adapters = enumerate_preferred(request.backends).await;
        let summaries: Vec<_> = adapters
            .iter()
            .enumerate()
            .map(|(i, a)| summarize(i, a))
            .collect();
        let index = match request.adapter_index {
            Some(i) if i < adapters.len() => i,
            Some(i) => {
                return Err(GruError::NoAdapter(format!(
                    "adapter index {i} requested, but only {} adapter(s) found (see `gru devices`)",
                    adapters.len()
                )))
            }
            None => best_adapter_index(&summaries).ok_or_else(|| {
                GruError::NoAdapter(format!(
                    "wgpu found no adapter on backends {:?}; install a Vulkan driver (for example Mesa's mesa-vulkan-drivers)",
                    request.backends
                ))
            })?,
        };
        let adapter = &adapters[index];
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Refuse an adapter some kernel would not fit, before any pipeline fails with
        // wgpu's message (a GL/GLES adapter with few storage buffers per stage).
        let (software, windows) =
            builds(&info, adapter.features(), &limits, request.subgroup_kernels);
        if let Some(reason) = crate::gpu::kernels::unfit(&limits, software, windows) {
            return Err(GruError::RequestDevice {
                adapter: info.name.clone(),
                reason,
            });
        }
        // Subgroup operations where offered: the software adapter's GEMM shares loaded
        // values between lanes with them.
        // f16 storage where offered: `--precision f16` builds need it
        // (`GpuContext::supports_f16`), and asking costs the f32 builds nothing.
        let features = adapter.features() & (wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16);
        let desc = wgpu::DeviceDescriptor {
            label: Some("gru-engine"),
            required_features: features,
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        };
        let (device, queue) =
            adapter
                .request_device(&desc)
                .await
                .map_err(|e| GruError::RequestDevice {
                    adapter: info.name.clone(),
                    reason: e.to_string(),
                })?;
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        device
            .set_device_lost_callback(move |_reason, _msg| lost_flag.store(true, Ordering::SeqCst));
        let uncaptured = Arc::new(Mutex::new(None));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }));
        Ok(Arc::new(GpuContext {
            device,
            queue,
            info,
            limits,
            kernels: KernelCache::default(),
            subgroup_kernels: request.subgroup_kernels,
            sequence_kernels: request.sequence_kernels,
            split_steps: request.split_steps,
            wide_steps: request.wide_steps,
            pair_directions: request.pair_directions,
            record_only: request.record_only,
            lost,
            uncaptured,
            allocated: AtomicU64::new(0),
        }))
    }

    /// Name, backend, type and driver of the adapter.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Whether the step kernels run whole chunks of timesteps per dispatch at every
    /// hidden size: software adapters, unless the request turned it off.
    pub(crate) fn sequence_everywhere(&self) -> bool {
        self.is_software() && self.sequence_kernels
    }

    /// Whether the device gets the GPU builds: the split step kernels and the GPU
    /// slicing of the column sums ([`DeviceRequest::split_steps`] forces them either
    /// way; by default GPUs get them and software adapters do not).
    pub(crate) fn gpu_builds(&self) -> bool {
        self.split_steps()
    }

    /// Whether the per-step kernels run their split builds ([`DeviceRequest::split_steps`]).
    pub(crate) fn split_steps(&self) -> bool {
        self.split_steps.unwrap_or(!self.is_software())
    }

    /// Whether the GPU step builds take their wide tiles ([`DeviceRequest::wide_steps`]).
    pub(crate) fn wide_steps(&self) -> bool {
        self.wide_steps
            .unwrap_or(self.info.device_type == wgpu::DeviceType::IntegratedGpu)
    }

    /// Whether bidirectional layers may pair their directions in one step dispatch
    /// ([`DeviceRequest::pair_directions`]).
    pub(crate) fn pair_directions(&self) -> bool {
        self.pair_directions
    }

    /// Whether the loop-iteration cap of a software adapter bounds what one invocation
    /// runs: on software adapters, unless the device only records (`record_only`).
    pub(crate) fn loop_capped(&self) -> bool {
        self.is_software() && !self.record_only
    }

    /// A CPU rasterizer (llvmpipe, SwiftShader): correct but about a thousand times slower than a GPU.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether kernels may use subgroup operations with subgroups of 8 to 64 lanes (the
    /// subgroup kernels shuffle from lanes 0 to 7, and a subgroup must fit the GEMM's
    /// 64-lane workgroup).
    #[cfg(test)]
    pub(crate) fn subgroups_of_8(&self) -> bool {
        self.subgroup_kernels
            && self.device.features().contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size >= 8
            && self.info.subgroup_max_size <= 64
    }

    /// [`builds`] of this device.
    fn builds(&self) -> (bool, bool) {
        builds(
            &self.info,
            self.device.features(),
            &self.limits,
            self.subgroup_kernels,
        )
    }

    /// Whether the ops pick the subgroup builds of their kernels: a software adapter
    /// (where they pay; GPUs keep the tuned portable builds) with subgroups of 8 to 64.
    pub(crate) fn subgroup_builds(&self) -> bool {
        self.builds().0
    }

    /// Whether GEMMs read op(B) through 64 KiB uniform windows
    /// (shaders/parts/gemm_b_uniform.wgsl): with the subgroup builds, where the adapter
    /// binds uniform buffers that large. Storage buffers then carry the uniform usage
    /// and [`UNIFORM_WINDOW`] bytes of slack, so a window may start at any of their
    /// values.
    pub(crate) fn uniform_windows(&self) -> bool {
        self.builds().1
    }

    /// Whether the device runs f16 storage builds (`wgpu::Features::SHADER_F16`, which
    /// `gru devices` lists per adapter): what [`crate::Precision::F16`] needs.
    pub fn supports_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// `Ok` where the device runs `precision`, else the typed error naming the missing
    /// feature and the adapter.
    pub fn check_precision(&self, precision: crate::Precision) -> Result<()> {
        if precision.is_half() && !self.supports_f16() {
            return Err(GruError::MissingFeature {
                adapter: self.info.name.clone(),
                feature: "SHADER_F16",
                needed_by: format!("--precision {precision}"),
            });
        }
        Ok(())
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Runs `f` inside validation and out-of-memory error scopes and returns what they
    /// caught. In a browser, where their answers cannot be waited for here, errors
    /// reach the uncaptured-error handler instead and the next check reports them
    /// ([`GpuContext::check_health`]; every read-back makes one).
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::gpu::wait::blocking(self.scoped_async(async { f() }))
        }
        #[cfg(target_arch = "wasm32")]
        {
            let out = f();
            self.check_health()?;
            out
        }
    }

    /// [`GpuContext::scoped`] around a future: the one implementation of the scopes.
    pub(crate) async fn scoped_async<T>(
        &self,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f.await;
        let v = validation.pop().await;
        let o = oom.pop().await;
        self.check_health()?;
        if let Some(e) = o {
            return Err(GruError::OutOfMemory(e.to_string()));
        }
        if let Some(e) = v {
            return Err(GruError::Validation(e.to_string()));
        }
        out
    }

    /// Device lost or an error outside any scope: report it once.
    pub(crate) fn check_health(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(GruError::DeviceLost(format!("{} was lost", self.info.name)));
        }
        if let Some(e) = self.uncaptured.lock().ok().and_then(|mut s| s.take()) {
            return Err(GruError::Validation(e));
        }
        Ok(())
    }

    /// Blocks until the queue is idle.
    pub fn wait_idle(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| GruError::DeviceLost(e.to_string()))?;
        self.check_health()
    }

    /// Waits for the queue before an owner of submitted work goes away, ignoring a lost
    /// device. A context often outlives its models (a `static` one never drops), and a
    /// process that exits while a software driver's queue thread still runs its commands
    /// can crash in the driver's exit handlers (llvmpipe: SIGSEGV/abort in LLVM teardown).
    pub(crate) fn settle(&self) {
        let _ = self.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        });
    }

    /// Bytes of every buffer the engine has created on this device so far, freed ones
    /// included: read before and after building a model (a trainer and its
    /// [`crate::train::Trainer::prepare`]d shape), the difference is the device memory
    /// it took.
    ///
    /// ```no_run
    /// # use gru_engine::model::{ModelConfig, ModelParams};
    /// # use gru_engine::train::{GpuTrainer, TrainOptions, Trainer};
    /// # fn main() -> gru_engine::Result<()> {
    /// let ctx = gru_engine::GpuContext::new_default()?;
    /// let before = ctx.allocated_bytes();
    /// let params = ModelParams::init(ModelConfig::language_model(65, 256, 1024), 1)?;
    /// let mut t = GpuTrainer::new(ctx.clone(), &params, TrainOptions::adam(1e-3))?;
    /// t.prepare(100, 64)?; // the buffers of batches of 64 x 100
    /// println!("{} bytes", ctx.allocated_bytes() - before);
    /// # Ok(()) }
    /// ```
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// The largest buffer a kernel can bind whole, in bytes ([`binding_limit`]).
    pub(crate) fn storage_limit(&self) -> u64 {
        binding_limit(&self.limits)
    }

    /// Creates a buffer, refusing sizes past what it can be used for.
    pub(crate) fn buffer(
        &self,
        label: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        let limit = if usage.contains(wgpu::BufferUsages::STORAGE) {
            self.storage_limit()
        } else {
            self.limits.max_buffer_size
        };
        let size = buffer_size(label, bytes, limit)?;
        self.allocated.fetch_add(size, Ordering::Relaxed);
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer of `len` f32 values (see [`Self::uniform_windows`] for what
    /// software adapters add).
    pub(crate) fn storage(&self, label: &str, len: usize) -> Result<wgpu::Buffer> {
        self.storage_as(label, len, false)
    }

    /// A storage buffer of `len` f16 values where `half`, else f32 ones.
    pub(crate) fn storage_as(&self, label: &str, len: usize, half: bool) -> Result<wgpu::Buffer> {
        use wgpu::BufferUsages as U;
        let bytes = value_bytes(half) * len as u64;
        let usage = U::STORAGE | U::COPY_DST | U::COPY_SRC;
        // Slack only where the whole buffer still binds as storage; a GEMM whose window
        // would pass the end of a buffer without it reads op(B) from storage instead.
        // f16 tensors are never read through windows (they hold f32).
        // (An empty buffer, an inference workspace's gradient, is never read.)
        if !half
            && bytes > 0
            && self.uniform_windows()
            && bytes + UNIFORM_WINDOW <= self.storage_limit()
        {
            return self.buffer(label, bytes + UNIFORM_WINDOW, usage | U::UNIFORM);
        }
        self.buffer(label, bytes, usage)
    }

    /// A host-readable buffer of `len` f32 values for readback.
    pub(crate) fn staging(&self, len: usize) -> Result<wgpu::Buffer> {
        self.buffer(
            "staging",
            4 * len as u64,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )
    }

    /// A uniform buffer holding `bytes`.
    pub(crate) fn uniform(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        use wgpu::BufferUsages as U;
        let buf = self.buffer(label, bytes.len() as u64, U::UNIFORM | U::COPY_DST)?;
        self.queue.write_buffer(&buf, 0, bytes);
        Ok(buf)
    }

    /// Copies `parts` (buffer, first f32, count) into `staging` in one submission and
    /// reads them back, one `Vec` per part, blocking until they arrive. In a browser,
    /// where nothing may block, it is an error: [`GpuContext::read_f32_async`] is the
    /// same, awaited.
    pub(crate) fn read_f32(
        &self,
        staging: &wgpu::Buffer,
        parts: &[(&wgpu::Buffer, usize, usize)],
    ) -> Result<Vec<Vec<f32>>> {
        crate::gpu::wait::blocking(self.read_f32_async(staging, parts))
    }

    /// [`GpuContext::read_f32`], awaited. Natively the device is polled until the copy
    /// is done; in a browser the mapping's callback completes the wait when the browser
    /// runs it.
    pub(crate) async fn read_f32_async(
        &self,
        staging: &wgpu::Buffer,
        parts: &[(&wgpu::Buffer, usize, usize)],
    ) -> Result<Vec<Vec<f32>>> {
        self.read_as_async(staging, parts, false).await
    }

    /// [`GpuContext::read_f32_async`] of parts holding f16 values where `half` (`first`
    /// and `len` then count f16 values), widened to f32: the one implementation.
    pub(crate) async fn read_as_async(
        &self,
        staging: &wgpu::Buffer,
        parts: &[(&wgpu::Buffer, usize, usize)],
        half: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let size = value_bytes(half);
        // A copy moves whole 4-byte words: an f16 part of odd length or start is widened
        // to the words around it, and its values are picked out below.
        let words = |first: usize, len: usize| -> (u64, u64) {
            let (a, b) = (first as u64 * size, (first + len) as u64 * size);
            (a / 4 * 4, b.div_ceil(4) * 4)
        };
        let total: u64 = parts
            .iter()
            .map(|p| {
                let (a, b) = words(p.1, p.2);
                b - a
            })
            .sum();
        if total == 0 {
            return Ok(parts.iter().map(|_| Vec::new()).collect());
        }
        self.scoped_async(async {
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("readback"),
                });
            let mut at = 0u64;
            for (buf, first, len) in parts {
                let (a, b) = words(*first, *len);
                enc.copy_buffer_to_buffer(buf, a, staging, at, b - a);
                at += b - a;
            }
            self.queue.submit([enc.finish()]);
            let slice = staging.slice(..total);
            let (tx, rx) = crate::gpu::wait::oneshot();
            slice.map_async(wgpu::MapMode::Read, move |r| tx.send(r));
            #[cfg(not(target_arch = "wasm32"))]
            self.wait_idle()?;
            rx.await
                .ok_or_else(|| GruError::DeviceLost("buffer mapping never completed".into()))?
                .map_err(|e| GruError::DeviceLost(format!("buffer mapping failed: {e}")))?;
            let out = {
                let view = slice
                    .get_mapped_range()
                    .map_err(|e| GruError::DeviceLost(format!("buffer mapping failed: {e:?}")))?;
                let mut at = 0usize;
                parts
                    .iter()
                    .map(|p| {
                        let (a, b) = words(p.1, p.2);
                        let bytes = &view[at..at + (b - a) as usize];
                        at += (b - a) as usize;
                        let skip = (p.1 as u64 * size - a) as usize;
                        if half {
                            let all: &[u16] = bytemuck::cast_slice(bytes);
                            let first = skip / 2;
                            all[first..first + p.2]
                                .iter()
                                .map(|&v| half::f16::from_bits(v).to_f32())
                                .collect()
                        } else {
                            let all: &[f32] = bytemuck::cast_slice(bytes);
                            all[..p.2].to_vec()
                        }
                    })
                    .collect()
            };
            staging.unmap();
            Ok(out)
        })
        .await
    }
}

/// Bytes of one stored value: 2 for f16 (`half`), 4 for f32.
pub(crate) fn value_bytes(half: bool) -> u64 {
    if half {
        2
    } else {
        4
    }
}

/// The most bytes any binding may cover, whatever the adapter reports: the kernels index
/// with u32 and the host casts offsets to u32, so a binding past 2^31 would wrap them.
/// Metal reports `maxBufferLength` (tens of GB on Apple silicon) as the binding limit,
/// and naga's Metal bounds checks saturate at u32::MAX, so wrapped indices there would
/// compute silently wrong values instead of failing. Larger work runs in batch chunks.
pub(crate) const BINDING_CAP: u64 = (1 << 31) - 16;

/// The largest buffer a kernel can bind whole on a device with `limits`, in bytes.
pub(crate) fn binding_limit(limits: &wgpu::Limits) -> u64 {
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
        .min(BINDING_CAP)
}

/// The size a buffer of `bytes` gets (at least 16, a multiple of 16: bindings may not be
/// empty), or why not: the rounded size must still be within `limit`.
pub(crate) fn buffer_size(label: &str, bytes: u64, limit: u64) -> Result<u64> {
    let size = bytes.max(16).div_ceil(16).saturating_mul(16);
    if size > limit {
        return Err(GruError::TooLarge {
            what: label.to_string(),
            bytes,
            limit,
        });
    }
    Ok(size)
}

/// The kernel cache is shared by every user of the context; a panic while it was held
/// leaves it unusable.
fn poisoned() -> GruError {
    GruError::State("kernel cache lock poisoned by an earlier panic".into())
}

/// Bytes of op(B) one GEMM dispatch reads through a uniform binding on software
/// adapters (`array<vec4<f32>, 4096>` in shaders/parts/gemm_b_uniform.wgsl).
pub(crate) const UNIFORM_WINDOW: u64 = 65536;

/// Uniform buffers the window builds bind in one stage at most (generate_uniform's
/// weights and parameters; WebGPU's default allows 12, llvmpipe many more).
#[doc(hidden)]
pub const UNIFORM_BUFFERS_PER_STAGE: u32 = 14;

/// Every runtime check on except naga's loop bounding: its counter in every loop keeps
/// drivers from unrolling them (wgpu issue 7698 reports 100x on some GPUs).
const TRUSTED_CHECKS: wgpu::ShaderRuntimeChecks = wgpu::ShaderRuntimeChecks {
    force_loop_bounding: false,
    ..wgpu::ShaderRuntimeChecks::checked()
};

impl GpuContext {
    /// The pipeline for `kernel` specialised with override `constants` (booleans as 0/1).
    pub(crate) fn pipeline(
        &self,
        kernel: Kernel,
        constants: &[(&'static str, u32)],
    ) -> Result<Arc<Pipeline>> {
        self.pipeline_as(kernel, Elems::F32, constants)
    }

    /// [`GpuContext::pipeline`] of the build with storage types `elems`
    /// (`kernels::Elems`); an f16 build on a device without SHADER_F16 is refused
    /// before wgpu sees it.
    pub(crate) fn pipeline_as(
        &self,
        kernel: Kernel,
        elems: Elems,
        constants: &[(&'static str, u32)],
    ) -> Result<Arc<Pipeline>> {
        if elems.half() {
            self.check_precision(crate::Precision::F16)?;
        }
        let key = (kernel, elems, constants.to_vec());
        if let Some(p) = self
            .kernels
            .pipelines
            .lock()
            .map_err(|_| poisoned())?
            .get(&key)
        {
            return Ok(p.clone());
        }
        let built = self.scoped(|| {
            let module = {
                let mut modules = self.kernels.modules.lock().map_err(|_| poisoned())?;
                modules
                    .entry((kernel.shader(), elems))
                    .or_insert_with(|| {
                        let desc = wgpu::ShaderModuleDescriptor {
                            label: Some(kernel.shader().label()),
                            source: wgpu::ShaderSource::Wgsl(kernel.shader().source_as(elems)),
                        };
                        // SAFETY: loop bounding only guards against loops that never end;
                        // every loop in shaders/ runs over a bound fixed by its uniform
                        // parameters. Bounds checks and the other checks stay on.
                        unsafe {
                            self.device
                                .create_shader_module_trusted(desc, TRUSTED_CHECKS)
                        }
                    })
                    .clone()
            };
            let entries: Vec<_> = kernel
                .slots()
                .iter()
                .enumerate()
                .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
                    binding: i as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: match slot {
                        Slot::Uniform | Slot::StepUniform => wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Uniform,
                            has_dynamic_offset: *slot == Slot::StepUniform,
                            min_binding_size: None,
                        },
                        Slot::Read | Slot::ReadWrite => wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage {
                                read_only: *slot == Slot::Read,
                            },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                    },
                    count: None,
                })
                .collect();
            let label = kernel.entry();
            let layout = self
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(label),
                    entries: &entries,
                });
            let pipeline_layout =
                self.device
                    .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: Some(label),
                        bind_group_layouts: &[Some(&layout)],
                        immediate_size: 0,
                    });
            let consts: Vec<(&str, f64)> = constants.iter().map(|(k, v)| (*k, *v as f64)).collect();
            let pipeline = self
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(label),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(kernel.entry()),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &consts,
                        ..Default::default()
                    },
                    cache: None,
                });
            Ok(Arc::new(Pipeline {
                pipeline,
                layout,
                kernel,
            }))
        })?;
        self.kernels
            .pipelines
            .lock()
            .map_err(|_| poisoned())?
            .insert(key, built.clone());
        Ok(built)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library's own pick passes over an adapter some kernel would not fit while a
    /// fitting one exists, and falls back to the best of all only when none fits.
    #[test]
    fn the_pick_skips_unfit_adapters() {
        let adapter = |index, device_type, unfit: Option<&str>| AdapterSummary {
            index,
            name: format!("adapter {index}"),
            backend: wgpu::Backend::Vulkan,
            device_type,
            driver: String::new(),
            driver_info: String::new(),
            max_storage_buffer_binding_size: 1 << 27,
            max_buffer_size: 1 << 31,
            max_compute_workgroup_storage_size: 1 << 15,
            max_storage_buffers_per_shader_stage: 8,
            shader_f16: false,
            subgroup: false,
            unfit: unfit.map(String::from),
        };
        let small =
            Some("the kernels need max_compute_workgroup_size_y >= 8, the adapter allows 1");
        let list = [
            adapter(0, wgpu::DeviceType::DiscreteGpu, small),
            adapter(1, wgpu::DeviceType::Cpu, None),
        ];
        assert_eq!(best_adapter_index(&list), Some(1));
        let none_fit = [
            adapter(0, wgpu::DeviceType::Cpu, small),
            adapter(1, wgpu::DeviceType::DiscreteGpu, small),
        ];
        assert_eq!(best_adapter_index(&none_fit), Some(1));
        assert_eq!(best_adapter_index(&[]), None);
    }

    /// The default device; under `CI` a missing one fails the test instead of skipping it.
    fn test_context() -> Option<Arc<GpuContext>> {
        match GpuContext::new_default() {
            Ok(c) => Some(c),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("CI is set but no GPU adapter: {e}")
            }
            Err(e) => {
                eprintln!("skipping: {e}");
                None
            }
        }
    }

    /// wgpu's default for an uncaptured error is a panic; gru-engine must return it.
    #[test]
    fn validation_errors_come_back_as_errors() {
        let Some(ctx) = test_context() else { return };
        // MAP_READ may only be combined with COPY_DST: an invalid buffer descriptor.
        let r = ctx.scoped(|| {
            ctx.buffer(
                "bad",
                64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
            )?;
            Ok(())
        });
        match r {
            Err(GruError::Validation(msg)) => {
                // wgpu names the buffer by its label.
                assert!(msg.contains("bad"), "{msg}")
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        // The device is still usable afterwards.
        ctx.scoped(|| ctx.storage("fine", 4).map(|_| ())).unwrap();
    }

    #[test]
    fn oversized_buffers_are_refused_before_wgpu_sees_them() {
        let Some(ctx) = test_context() else { return };
        let too_big = ctx.storage_limit() + 4;
        match ctx.buffer("huge", too_big, wgpu::BufferUsages::STORAGE) {
            Err(GruError::TooLarge { what, bytes, .. }) => {
                assert!(what == "huge" && bytes == too_big)
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    /// A Metal-like adapter reporting 36 GB as its binding limit still binds at most
    /// 2^31 - 16 bytes; a smaller adapter's own limit wins.
    #[test]
    fn bindings_are_capped_below_2_gib_whatever_the_adapter_reports() {
        let metal = wgpu::Limits {
            max_storage_buffer_binding_size: 36 << 30,
            max_buffer_size: 36 << 30,
            ..wgpu::Limits::default()
        };
        assert_eq!(binding_limit(&metal), (1 << 31) - 16);
        let small = wgpu::Limits {
            max_storage_buffer_binding_size: 128 << 20,
            max_buffer_size: 256 << 20,
            ..wgpu::Limits::default()
        };
        assert_eq!(binding_limit(&small), 128 << 20);
    }

    /// The size check runs on the rounded size: a request of a few bytes under the limit
    /// that rounds up past it is refused, naming the request.
    #[test]
    fn sizes_are_checked_after_rounding() {
        let limit = (1u64 << 31) - 1;
        // 2^31 - 15 bytes rounds up to 2^31.
        match buffer_size("b", limit - 14, limit) {
            Err(GruError::TooLarge { what, bytes, .. }) => {
                assert!(what == "b" && bytes == limit - 14)
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(buffer_size("b", limit - 15, limit).unwrap(), limit - 15);
        assert_eq!(buffer_size("b", limit - 20, limit).unwrap(), limit - 15);
        assert_eq!(buffer_size("b", 0, limit).unwrap(), 16);
        assert_eq!(buffer_size("b", 17, 32).unwrap(), 32);
        assert!(buffer_size("b", 17, 31).is_err());
    }
}
