// Throwaway: UBO vs SSBO load rates on llvmpipe.
use std::time::Instant;
fn main() {
    let mut d = wgpu::InstanceDescriptor::new_without_display_handle(); d.backends = wgpu::Backends::VULKAN; let inst = wgpu::Instance::new(d);
    let adapter = pollster::block_on(inst.request_adapter(&wgpu::RequestAdapterOptions::default())).unwrap();
    let lim = adapter.limits();
    println!("{:?} max_uniform_buffer_binding_size {}", adapter.get_info().name, lim.max_uniform_buffer_binding_size);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor { required_limits: lim.clone(), ..Default::default() })).unwrap();
    let n4: u32 = 4096; // vec4s = 64 KiB
    let src = r#"
@group(0) @binding(0) var<uniform> u: array<vec4<f32>, 4096>;
@group(0) @binding(1) var<storage, read> s: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> q: vec4<u32>;
@compute @workgroup_size(64)
fn ubo_lane(@builtin(global_invocation_id) g: vec3<u32>) {
  var acc = vec4<f32>(0.0); var at = g.x & 4095u;
  for (var i = 0u; i < q.x; i++) { acc += u[at]; at = (at + 64u) & 4095u; }
  dst[g.x] = acc;
}
@compute @workgroup_size(64)
fn ssbo_lane(@builtin(global_invocation_id) g: vec3<u32>) {
  var acc = vec4<f32>(0.0); var at = g.x & 4095u;
  for (var i = 0u; i < q.x; i++) { acc += s[at]; at = (at + 64u) & 4095u; }
  dst[g.x] = acc;
}
@compute @workgroup_size(64)
fn ubo_uni(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) w: vec3<u32>) {
  var a0 = vec4<f32>(f32(g.x)); var a1 = a0; var a2 = a0; var a3 = a0; var at = w.x & 4095u;
  for (var i = 0u; i < q.x; i++) { let v = u[at]; a0 = fma(v, vec4(0.5), a0); a1 = fma(v, vec4(0.25), a1); a2 = fma(v, vec4(0.125), a2); a3 = fma(v, vec4(0.7), a3); at = (at + 1u) & 4095u; }
  dst[g.x] = a0 + a1 + a2 + a3;
}
@compute @workgroup_size(64)
fn ssbo_uni(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) w: vec3<u32>) {
  var a0 = vec4<f32>(f32(g.x)); var a1 = a0; var a2 = a0; var a3 = a0; var at = w.x & 4095u;
  for (var i = 0u; i < q.x; i++) { let v = s[at]; a0 = fma(v, vec4(0.5), a0); a1 = fma(v, vec4(0.25), a1); a2 = fma(v, vec4(0.125), a2); a3 = fma(v, vec4(0.7), a3); at = (at + 1u) & 4095u; }
  dst[g.x] = a0 + a1 + a2 + a3;
}
@compute @workgroup_size(64)
fn ubo_scalar(@builtin(global_invocation_id) g: vec3<u32>) {
  var acc = 0.0; var at = g.x & 16383u;
  for (var i = 0u; i < q.x; i++) { acc += u[at >> 2u][at & 3u]; at = (at + 64u) & 16383u; }
  dst[g.x] = vec4(acc);
}
@compute @workgroup_size(64)
fn ssbo_scalar(@builtin(global_invocation_id) g: vec3<u32>) {
  var acc = 0.0; var at = g.x & 16383u;
  for (var i = 0u; i < q.x; i++) { acc += s[at >> 2u][at & 3u]; at = (at + 64u) & 16383u; }
  dst[g.x] = vec4(acc);
}
"#;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(src.into()) });
    use wgpu::util::DeviceExt;
    let data: Vec<f32> = (0..n4 * 4).map(|i| (i % 7) as f32).collect();
    let ubuf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytemuck::cast_slice(&data), usage: wgpu::BufferUsages::UNIFORM });
    let sbuf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytemuck::cast_slice(&data), usage: wgpu::BufferUsages::STORAGE });
    let groups = 256u32;
    let dst = device.create_buffer(&wgpu::BufferDescriptor { label: None, size: (groups * 64 * 16) as u64, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let iters = 2000u32;
    let qb = device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytemuck::cast_slice(&[iters, 0, 0, 0]), usage: wgpu::BufferUsages::UNIFORM });
    for entry in ["ubo_lane", "ssbo_lane", "ubo_uni", "ssbo_uni", "ubo_scalar", "ssbo_scalar"] {
        let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: None, layout: None, module: &module, entry_point: Some(entry), compilation_options: Default::default(), cache: None });
        let bgl = p.get_bind_group_layout(0);
        let mut entries = vec![];
        let used: &[u32] = if entry.starts_with("ubo") { &[0, 2, 3] } else { &[1, 2, 3] };
        for &b in used { let buf = match b {0=>&ubuf,1=>&sbuf,2=>&dst,_=>&qb}; entries.push(wgpu::BindGroupEntry { binding: b, resource: buf.as_entire_binding() }); }
        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &bgl, entries: &entries });
        let mut best = f64::MAX;
        for _ in 0..4 {
            let mut enc = device.create_command_encoder(&Default::default());
            { let mut pass = enc.begin_compute_pass(&Default::default()); pass.set_pipeline(&p); pass.set_bind_group(0, &bg, &[]); pass.dispatch_workgroups(groups, 1, 1); }
            let t = Instant::now();
            queue.submit([enc.finish()]);
            device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        let loads = (groups * 64) as f64 * iters as f64;
        println!("{entry}: {:.1} ms, {:.2} G loads/s (x{} floats), {:.1} GFLOP/s if 16 FMA/load", best * 1e3, loads / best / 1e9, if entry.contains("scalar") {1} else {4}, loads * 32.0 / best / 1e9);
    }
}
