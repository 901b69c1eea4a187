// The Music Transformer in the browser: onnxruntime-web (wasm) runs model.onnx one event at a time
// with its key/value cache, a seeded sampler keeps to the performance grammar, and the events become a
// standard MIDI file. Nothing leaves the page. `hf-music export-web` writes model.onnx and vocab.json.
import * as ort from "./ort/ort.wasm.min.mjs";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a plain static server lacks

const PITCHES = 128;
const PIANO = [21, 108]; // lowest and highest key of a piano: strikes outside are masked

export async function loadModel(base = ".") {
  const vocab = await (await fetch(`${base}/vocab.json`)).json();
  const session = await ort.InferenceSession.create(`${base}/model.onnx`, { executionProviders: ["wasm"] });
  return { session, vocab, layout: layoutOf(vocab) };
}

// Where the event blocks start, from the token names (as hf_music.grammar.EventLayout reads them).
export function layoutOf(vocab) {
  const id = (name) => vocab.tokens[name];
  const steps = Math.round;
  return {
    noteOn: id("NOTE_ON_0"), noteOff: id("NOTE_OFF_0"), shift: id("TIME_SHIFT_1"), velocity: id("VELOCITY_0"),
    velocityBins: Object.keys(vocab.tokens).filter((name) => name.startsWith("VELOCITY_")).length,
    size: Object.keys(vocab.tokens).length, timeStep: vocab.time_step, bos: id("<bos>"),
    maxNote: steps(vocab.grammar.max_note_seconds / vocab.time_step),
    maxSilence: steps(vocab.grammar.max_silence_seconds / vocab.time_step),
    maxPolyphony: vocab.grammar.max_polyphony, pitchTemperature: vocab.grammar.pitch_temperature,
  };
}

// mulberry32: a small seeded PRNG, so that a seed gives the same piece again.
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The hard rules of hf_music.grammar: no NOTE_OFF of a silent pitch, no NOTE_ON of a sounding one, at
// most maxPolyphony notes, no note held past maxNote steps (overdue notes must be released first), no
// silence past maxSilence steps, no specials. Clocks count TIME_SHIFT steps.
export class Grammar {
  constructor(layout) {
    this.layout = layout;
    this.struck = new Float64Array(PITCHES).fill(-1); // step each sounding pitch was struck; -1: silent
    this.now = 0;
    this.silentSince = 0;
  }

  update(id) {
    const L = this.layout;
    if (id >= L.noteOn && id < L.shift) {
      const pitch = (id - L.noteOn) % PITCHES;
      this.struck[pitch] = id < L.noteOff ? this.now : -1;
      this.silentSince = this.now;
    } else if (id >= L.shift && id < L.velocity) {
      this.now += id - L.shift + 1;
    }
  }

  // Sets forbidden logits to -Infinity; the NOTE_ONs (NOTE_OFFs) keep their total probability, so the
  // model's rate of strikes (releases) stays; the pitch temperature shapes which pitch is struck.
  mask(logits) {
    const L = this.layout;
    const sounding = [...this.struck.keys()].filter((p) => this.struck[p] >= 0);
    const held = Math.max(0, ...sounding.map((p) => this.now - this.struck[p]));
    const overdue = sounding.filter((p) => this.now - this.struck[p] >= L.maxNote);
    const allowed = new Uint8Array(logits.length);
    for (let p = 0; p < PITCHES; p++) {
      const isSounding = this.struck[p] >= 0;
      allowed[L.noteOn + p] = !isSounding && !overdue.length && sounding.length < L.maxPolyphony && p >= PIANO[0] && p <= PIANO[1];
      allowed[L.noteOff + p] = isSounding && (overdue.length === 0 || overdue.includes(p));
    }
    const budget = sounding.length ? L.maxNote - held : L.maxSilence - (this.now - this.silentSince);
    for (let id = L.shift; id < L.velocity; id++) allowed[id] = overdue.length === 0 && id - L.shift + 1 <= budget;
    for (let id = L.velocity; id < L.size; id++) allowed[id] = overdue.length === 0;
    keepMass(logits, allowed, L.noteOn, L.noteOff, L.pitchTemperature);
    keepMass(logits, allowed, L.noteOff, L.shift, 1);
    for (let id = 0; id < logits.length; id++) if (!allowed[id]) logits[id] = -Infinity;
  }
}

function logSumExp(values) {
  const top = Math.max(...values);
  if (top === -Infinity) return top;
  return top + Math.log(values.reduce((sum, v) => sum + Math.exp(v - top), 0));
}

// Logits of block [first, last): the allowed ones tempered and rescaled to the whole block's mass.
function keepMass(logits, allowed, first, last, temperature) {
  const ids = [];
  for (let id = first; id < last; id++) if (allowed[id]) ids.push(id);
  if (!ids.length) return;
  const mass = logSumExp(Array.from(logits.subarray(first, last)));
  for (const id of ids) logits[id] /= temperature;
  const shift = mass - logSumExp(ids.map((id) => logits[id]));
  for (const id of ids) logits[id] += shift;
}

function sample(logits, temperature, random) {
  const top = Math.max(...logits);
  const weights = logits.map((v) => Math.exp((v - top) / temperature));
  let r = random() * weights.reduce((a, b) => a + b, 0);
  for (let id = 0; id < weights.length; id++) if ((r -= weights[id]) <= 0 && weights[id] > 0) return id;
  return weights.findLastIndex((w) => w > 0);
}

// Events until `seconds` of music (or `maxEvents`); onProgress(seconds, tokens) per event. The graph
// takes the cache of the positions so far (`past`, empty at first) and returns it one event longer
// (`present`), so a step moves only what is filled. When the context is full, the most recent half
// of the events is prefilled again from position 0, as hf_music.decoding.reprime_length does.
export async function generate({ session, vocab, layout }, { seconds, temperature, seed, onProgress, maxEvents }) {
  const random = seededRandom(seed);
  const grammar = new Grammar(layout);
  const empty = () => new ort.Tensor("float32", new Float32Array(0), vocab.past_shape);
  const limit = maxEvents ?? Math.ceil(seconds * 100);
  let past = empty();
  const ids = [layout.bos];
  let fed = [layout.bos]; // the tokens the next step runs: a prefill, or the last event
  while (grammar.now * layout.timeStep < seconds && ids.length - 1 < limit) {
    const feeds = { input_ids: new ort.Tensor("int64", BigInt64Array.from(fed, BigInt), [1, fed.length]), past };
    const out = await session.run(feeds);
    past.dispose?.();
    past = out.present;
    const last = (fed.length - 1) * out.logits.dims[2]; // the last token's row (the model's vocab may be padded)
    const logits = Float64Array.from(out.logits.data.subarray(last, last + layout.size));
    out.logits.dispose?.();
    grammar.mask(logits);
    const id = sample(logits, temperature, random);
    grammar.update(id);
    ids.push(id);
    onProgress?.(grammar.now * layout.timeStep, ids.length - 1);
    if (past.dims[4] === vocab.context - 1) { // the new event would take the last slot: a new window
      past.dispose?.();
      past = empty();
      fed = ids.slice(-Math.floor(vocab.context / 2));
    } else {
      fed = [id];
    }
  }
  return ids;
}

// Notes (seconds) of an event sequence, as MidiTokenizer.ids_to_notes decodes them.
export function notesOf(ids, layout) {
  const notes = [];
  const open = new Map(); // pitch -> [start step, velocity]
  let now = 0;
  let velocity = Math.floor((Math.floor((64 * layout.velocityBins) / 128) + 0.5) * (128 / layout.velocityBins));
  const close = (pitch) => {
    const [start, vel] = open.get(pitch);
    if (now > start) notes.push({ pitch, velocity: vel, start: start * layout.timeStep, end: now * layout.timeStep });
    open.delete(pitch);
  };
  for (const id of ids) {
    if (id >= layout.noteOn && id < layout.shift) {
      const pitch = (id - layout.noteOn) % PITCHES;
      if (open.has(pitch)) close(pitch);
      if (id < layout.noteOff) open.set(pitch, [now, velocity]);
    } else if (id >= layout.shift && id < layout.velocity) {
      now += id - layout.shift + 1;
    } else if (id >= layout.velocity && id < layout.size) {
      const width = 128 / layout.velocityBins;
      velocity = Math.min(127, Math.max(1, Math.floor((id - layout.velocity + 0.5) * width)));
    }
  }
  [...open.keys()].forEach(close);
  return notes;
}

// A standard MIDI file (format 0, piano, 120 qpm, 1 tick = 1 ms).
export function midiFile(notes) {
  const events = notes.flatMap((n) => [
    [Math.round(n.end * 1000), 0x80, n.pitch, 0],
    [Math.round(n.start * 1000), 0x90, n.pitch, n.velocity],
  ]);
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]); // at one time, releases before strikes
  const track = [0x00, 0xff, 0x51, 0x03, 0x07, 0xa1, 0x20, 0x00, 0xc0, 0x00]; // tempo 500000 us, piano
  let time = 0;
  for (const [tick, status, pitch, velocity] of events) {
    track.push(...varLength(tick - time), status, pitch, velocity);
    time = tick;
  }
  track.push(0x00, 0xff, 0x2f, 0x00);
  const u32 = (n) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  const header = [0x4d, 0x54, 0x68, 0x64, ...u32(6), 0, 0, 0, 1, 0x01, 0xf4]; // 500 ticks per quarter
  return new Uint8Array([...header, 0x4d, 0x54, 0x72, 0x6b, ...u32(track.length), ...track]);
}

function varLength(value) {
  const bytes = [value & 0x7f];
  while ((value >>>= 7) > 0) bytes.unshift((value & 0x7f) | 0x80);
  return bytes;
}
