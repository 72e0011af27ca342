// Every kernel build gru-engine assembles, through Dawn (Tint's WGSL compiler and
// WebGPU's validation) on its null backend, at WebGPU's default limits: each module
// must compile without an error and each entry point must make a compute pipeline.
// Reads what tests/shaders_validate.rs dumps (target/shaders/: <build>.wgsl and
// kernels.json). Usage: node scripts/dawn/validate.mjs [dump folder]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create, globals } from "webgpu";

Object.assign(globalThis, globals);
const dir = process.argv[2] ?? "target/shaders";
const kernels = JSON.parse(readFileSync(join(dir, "kernels.json"), "utf8"));
const gpu = create(["backend=null"]);
const adapter = await gpu.requestAdapter();
if (!adapter) throw new Error("Dawn's null backend offered no adapter");
const subgroups = adapter.features.has("subgroups");
// WebGPU's default limits (no requiredLimits), but for the uniform-window builds, which
// the engine chooses only where the adapter allows the uniform buffers they bind
// (UNIFORM_BUFFERS_PER_STAGE, 14; the default is 12): those get a device that allows 14
// where Dawn's adapter does; where it does not, their modules are compiled and their
// pipelines, which no such adapter is given, are listed as not made.
const WINDOW_UNIFORMS = 14;
const requiredFeatures = subgroups ? ["subgroups"] : [];
// The f16 storage builds ("f16": true) get a device with shader-f16, as the engine
// builds them only where the adapter has it (SHADER_F16).
const f16 = adapter.features.has("shader-f16");
const portable = await adapter.requestDevice({ requiredFeatures });
// (An adapter makes one device: this one comes from an adapter of its own.)
const halfDevice = f16
  ? await (await gpu.requestAdapter()).requestDevice({
      requiredFeatures: [...requiredFeatures, "shader-f16"],
    })
  : null;
const windowLimitOk = adapter.limits.maxUniformBuffersPerShaderStage >= WINDOW_UNIFORMS;
const windows = windowLimitOk
  ? await adapter.requestDevice({
      requiredFeatures,
      requiredLimits: { maxUniformBuffersPerShaderStage: WINDOW_UNIFORMS },
    })
  : portable;
const notMade = [];
const failures = [];
const modules = new Map();
for (const k of kernels) {
  if (k.subgroups && !subgroups) {
    failures.push(`${k.shader}: needs the subgroups feature, which Dawn's adapter lacks`);
    continue;
  }
  if (k.f16 && !halfDevice) {
    failures.push(`${k.shader}: an f16 build, and Dawn's adapter lacks shader-f16`);
    continue;
  }
  const device = k.f16 ? halfDevice : k.shader.split("__")[0].endsWith("_uniform") ? windows : portable;
  let module = modules.get(k.shader);
  if (!module) {
    let code = readFileSync(join(dir, `${k.shader}.wgsl`), "utf8");
    // Native builds carry a marker where the browser build has the directive.
    if (k.subgroups) code = "enable subgroups;\n" + code.replace(/^\/\/ enable subgroups;[^\n]*\n/m, "");
    device.pushErrorScope("validation");
    module = device.createShaderModule({ code, label: k.shader });
    const info = await module.getCompilationInfo();
    const error = await device.popErrorScope();
    const errors = info.messages.filter((m) => m.type === "error");
    for (const m of errors) failures.push(`${k.shader}.wgsl:${m.lineNum}:${m.linePos}: ${m.message}`);
    if (error && !errors.length) failures.push(`${k.shader}.wgsl: ${error.message}`);
    modules.set(k.shader, module);
  }
  const uniforms = (readFileSync(join(dir, `${k.shader}.wgsl`), "utf8").match(/var<uniform>/g) ?? []).length;
  if (uniforms > device.limits.maxUniformBuffersPerShaderStage) {
    notMade.push(`${k.shader}:${k.entry} (binds ${uniforms} uniform buffers; Dawn's adapter allows ` +
      `${adapter.limits.maxUniformBuffersPerShaderStage}, and the engine gives this build only to adapters allowing ${WINDOW_UNIFORMS})`);
    continue;
  }
  device.pushErrorScope("validation");
  try {
    await device.createComputePipelineAsync({
      layout: "auto",
      compute: { module, entryPoint: k.entry },
      label: `${k.shader}:${k.entry}`,
    });
  } catch (e) {
    failures.push(`${k.shader}:${k.entry}: ${e.message}`);
  }
  const error = await device.popErrorScope();
  if (error) failures.push(`${k.shader}:${k.entry}: ${error.message}`);
}
portable.destroy();
if (halfDevice) halfDevice.destroy();
if (windows !== portable) windows.destroy();
for (const n of notMade) console.log(`module compiled, pipeline not made: ${n}`);
if (failures.length) {
  console.error(failures.join("\n"));
  console.error(`Dawn refused ${failures.length} of ${kernels.length} kernel builds`);
  process.exit(1);
}
const halves = kernels.filter((k) => k.f16).length;
console.log(`Dawn (Tint, null backend, WebGPU default limits${subgroups ? ", subgroups" : ""}, ` +
  `shader-f16 for the ${halves} f16 storage pipelines) compiled ` +
  `all ${modules.size} modules and made ${kernels.length - notMade.length} of ${kernels.length} pipelines ` +
  `(${notMade.length} listed above need more than Dawn's adapter allows)`);
