// The demo page: train a character model on WebGPU (or the CPU reference) with a live
// loss curve, generate from it or from a checkpoint `gru train` wrote, and do either
// from the URL alone (see README, "In the browser"): the result goes to #result and
// the title becomes "done" or "error: <message>".
import init, { Engine, Model, Trainer } from "./gru_web.js";

const $ = (id) => document.getElementById(id);
let model = null; // what Generate uses: a Model or the Trainer
let trainer = null;
let stopRequested = false;

function message(e) {
  return e && e.message ? e.message : String(e);
}

function done(text) {
  $("result").textContent = text;
  document.title = "done";
}

function fail(e) {
  const m = message(e);
  $("result").textContent = "error: " + m;
  document.title = "error: " + m;
}

async function fetchOk(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status} ${r.statusText}`);
  return r;
}

async function showAdapter() {
  const a = await Engine.adapterInfo();
  $("adapter").textContent = a.gpu
    ? `Adapter: ${a.name} (${a.backend}${a.fallback ? ", a fallback adapter" : ""})`
    : `No WebGPU here (${a.reason}): computing on the CPU reference.`;
  return a;
}

function drawCurve(losses) {
  const c = $("curve");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (losses.length < 2) return;
  const hi = Math.max(...losses), lo = Math.min(...losses);
  const span = hi - lo || 1;
  g.strokeStyle = "#1f6feb";
  g.lineWidth = 2;
  g.beginPath();
  losses.forEach((l, i) => {
    const x = (i / (losses.length - 1)) * (c.width - 20) + 10;
    const y = c.height - 10 - ((l - lo) / span) * (c.height - 30);
    i ? g.lineTo(x, y) : g.moveTo(x, y);
  });
  g.stroke();
  g.fillStyle = "#333";
  g.font = "12px sans-serif";
  g.fillText(`loss ${hi.toFixed(3)} → ${losses[losses.length - 1].toFixed(3)}`, 12, 14);
}

// Trains `steps` steps, evaluating every `evalEvery` and at the end as `gru train`
// does; returns the last evaluation.
async function train(text, config, steps, evalEvery) {
  trainer = await Trainer.create(text, config);
  model = trainer;
  const [nTrain, nVal] = trainer.characters;
  $("train-status").textContent =
    `${nTrain + nVal} characters (${nVal} for validation), vocabulary ${trainer.vocabularySize}, ` +
    `${trainer.parameters} parameters, on ${trainer.device}`;
  const losses = [];
  let last = null;
  const start = performance.now();
  stopRequested = false;
  while (trainer.steps < steps && !stopRequested) {
    const next = Math.min(steps, (Math.floor(trainer.steps / evalEvery) + 1) * evalEvery);
    losses.push(...(await trainer.step(Math.min(next - trainer.steps, 5))));
    if (trainer.steps === next) last = await trainer.evaluate();
    const rate = trainer.steps / ((performance.now() - start) / 1000);
    $("progress").value = trainer.steps / steps;
    const val = last && last.val_loss !== null ? `, validation loss ${last.val_loss.toFixed(4)}` : "";
    $("train-status").textContent =
      `step ${trainer.steps}/${steps}: loss ${losses[losses.length - 1].toFixed(4)}${val} | ` +
      `${rate.toFixed(2)} steps/s on ${trainer.device}`;
    drawCurve(losses);
  }
  if (!last || last.step !== trainer.steps) last = await trainer.evaluate();
  $("save").disabled = false;
  $("generate").disabled = false;
  $("model-status").textContent = `The model trained here (${trainer.steps} steps).`;
  return last;
}

function number(q, key, fallback) {
  if (!q.has(key)) return fallback;
  const v = Number(q.get(key));
  if (q.get(key).trim() === "" || Number.isNaN(v)) throw new Error(`${key} must be a number, found ${JSON.stringify(q.get(key))}`);
  return v;
}

// Generates with `m`; streams into #output and shows tokens/s. Returns the characters.
async function generate(m, prompt, length, options) {
  $("output").textContent = prompt;
  let count = 0;
  const start = performance.now();
  const text = await m.generate(prompt, length, {
    ...options,
    onToken: (c) => {
      count++;
      $("output").textContent += c;
    },
  });
  const s = (performance.now() - start) / 1000;
  $("gen-status").textContent = `${count} characters in ${s.toFixed(2)} s: ${(count / s).toFixed(1)} tokens/s`;
  return text;
}

// Work given by the URL: ?checkpoint=URL&prompt=...&length=...&temperature=...&topK=...&seed=...
// or ?train=URL&steps=...&hidden=...&embed=...&batch=...&seqLen=...&lr=...&seed=...
async function fromUrl(q) {
  if (q.has("checkpoint")) {
    const url = q.get("checkpoint");
    const bytes = new Uint8Array(await (await fetchOk(url)).arrayBuffer());
    model = await Model.load(bytes, { name: url, device: q.get("device") ?? "auto" });
    const prompt = q.has("prompt") ? q.get("prompt") : model.defaultPrompt;
    const text = await generate(model, prompt, number(q, "length", 500), {
      temperature: number(q, "temperature", 0.8),
      topK: number(q, "topK", 0),
      seed: number(q, "seed", 0),
    });
    done(prompt + text + "\n");
  } else if (q.has("train")) {
    const text = await (await fetchOk(q.get("train"))).text();
    const config = { device: q.get("device") ?? "auto" };
    for (const [key, fallback] of [["hidden", 128], ["embed", 32], ["batch", 32], ["seqLen", 64],
      ["lr", 0.002], ["seed", 42], ["layers", 1], ["clipNorm", 1], ["valSplit", 0.05]]) {
      config[key] = number(q, key, fallback);
    }
    if (q.has("optimizer")) config.optimizer = q.get("optimizer");
    const last = await train(text, config, number(q, "steps", 1200), number(q, "evalEvery", 200));
    done(last.json);
  }
}

function flags() {
  const n = (id) => Number($(id).value);
  return { hidden: n("hidden"), embed: n("embed"), seqLen: n("seqLen"), batch: n("batch"), lr: n("lr"), seed: n("seed") };
}

function wire() {
  $("sample-text").onclick = async () => {
    try {
      $("text").value = await (await fetchOk("sample.txt")).text();
    } catch (e) {
      fail(e);
    }
  };
  $("text-file").onchange = async (ev) => {
    const f = ev.target.files[0];
    if (f) $("text").value = await f.text();
  };
  $("train").onclick = async () => {
    $("train").disabled = true;
    $("stop").disabled = false;
    try {
      const last = await train($("text").value, flags(), Number($("steps").value), 50);
      done(last.json);
    } catch (e) {
      fail(e);
    } finally {
      $("train").disabled = false;
      $("stop").disabled = true;
    }
  };
  $("stop").onclick = () => (stopRequested = true);
  $("save").onclick = async () => {
    try {
      const bytes = await trainer.save();
      const a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
      a.download = "browser.safetensors";
      a.click();
    } catch (e) {
      fail(e);
    }
  };
  $("checkpoint-file").onchange = async (ev) => {
    const f = ev.target.files[0];
    if (!f) return;
    try {
      model = await Model.load(new Uint8Array(await f.arrayBuffer()), { name: f.name });
      $("model-status").textContent = `${f.name}: a ${model.kind} on ${model.device}.`;
      $("generate").disabled = model.kind !== "language-model";
    } catch (e) {
      $("model-status").textContent = message(e);
      fail(e);
    }
  };
  $("generate").onclick = async () => {
    $("generate").disabled = true;
    try {
      const prompt = $("prompt").value || model.defaultPrompt || undefined;
      const text = await generate(model, prompt ?? "", Number($("length").value), {
        temperature: Number($("temperature").value),
        topK: Number($("topK").value),
        seed: Number($("gen-seed").value),
      });
      done((prompt ?? "") + text + "\n");
    } catch (e) {
      fail(e);
    } finally {
      $("generate").disabled = false;
    }
  };
}

async function main() {
  try {
    await init();
    wire();
    await showAdapter();
    const q = new URLSearchParams(location.search);
    if (q.has("checkpoint") || q.has("train")) await fromUrl(q);
  } catch (e) {
    fail(e);
  }
}

main();
